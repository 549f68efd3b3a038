// A virtio-net device on @vhostkit/backend (docs/virtio-net.md): transmitq frames are counted and,
// by mode, reflected (MAC swap) into the same port's receiveq, switched to a peer port's receiveq,
// or dropped; `gen` also fills the receiveq with UDP frames. Queue pairs (MQ) and the control queue.
import { ChainBatch, isVirtqueueError } from "@vhostkit/virtqueue";
import { NET_HDR_SIZE, NetDeviceError, RxPort, writeSegments } from "./rx-port.mjs";

/** virtio-net feature bits (VIRTIO 1.2, 5.1.3). */
export const NetFeature = {
  MAC: 1n << 5n,
  MRG_RXBUF: 1n << 15n,
  STATUS: 1n << 16n,
  CTRL_VQ: 1n << 17n,
  CTRL_RX: 1n << 18n,
  MQ: 1n << 22n,
};
const CTRL_RX = 0,
  CTRL_MAC = 1,
  CTRL_MQ = 4,
  CTRL_MQ_VQ_PAIRS_SET = 0,
  CTRL_MAC_ADDR_SET = 1,
  OK = 0,
  ERR = 1;
/** Largest frame a transmit chain may carry (header excluded): no GSO is offered. */
export const MAX_FRAME = 65535;
const MAX_CTRL = 4096;

/** An Ethernet + IPv4 + UDP frame of `size` bytes (>= 42) from `mac`, zero payload, IPv4 checksum set. */
export function udpFrame(size, mac) {
  const f = new Uint8Array(Math.max(42, size));
  const v = new DataView(f.buffer);
  f.set([0x02, 0, 0, 0, 0, 0x02], 0), f.set(mac, 6), v.setUint16(12, 0x0800);
  v.setUint16(14, 0x4500), v.setUint16(16, f.length - 14), v.setUint16(20, 0x4000), v.setUint16(22, 0x4011);
  f.set([198, 18, 0, 1, 198, 18, 0, 2], 26);
  v.setUint16(34, 9), v.setUint16(36, 9), v.setUint16(38, f.length - 34);
  let sum = 0;
  for (let i = 14; i < 34; i += 2) sum += v.getUint16(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  v.setUint16(24, ~sum & 0xffff);
  return f;
}

/**
 * One virtio-net port. `mode`: "reflect", "switch" (frames go to `connect`ed peer port), "sink" or
 * "gen" (sink, and `gen.count` frames of `gen.size` bytes into the receiveq; 0 = no end).
 * Returns `{ device, stats, connect(peer) }`; `device` is the DeviceBackend to `serve`.
 */
export function netPort({ mode = "reflect", mac = [0x52, 0x54, 0, 0x12, 0x34, 0x56], pairs = 1, mergeable = true, gen = { size: 64, count: 0 } } = {}) {
  if (!Number.isInteger(pairs) || pairs < 1 || pairs > 0x8000) throw new RangeError(`pairs ${pairs} not in 1..32768`);
  const config = new Uint8Array(12); // mac, status, max_virtqueue_pairs, mtu
  const cv = new DataView(config.buffer);
  config.set(mac, 0), cv.setUint16(6, 1, true), cv.setUint16(8, pairs, true); // VIRTIO_NET_S_LINK_UP
  const rx = Array.from({ length: pairs }, () => new RxPort());
  const stats = { received: 0, receivedBytes: 0, sent: 0, sentBytes: 0, dropped: 0, activePairs: 1, receivedByPair: new Array(pairs).fill(0) };
  const txBatch = new ChainBatch(256);
  const ctrlBatch = new ChainBatch(16);
  const pkt = new Uint8Array(NET_HDR_SIZE + MAX_FRAME);
  const ctrlBuf = new Uint8Array(MAX_CTRL);
  const genPkt = new Uint8Array(NET_HDR_SIZE + Math.max(42, gen.size));
  genPkt.set(udpFrame(gen.size, mac), NET_HDR_SIZE);
  let cursor;
  let peer;
  const port = {
    /** The receiveq frames sent on pair `i` of the peer arrive at. */
    rxFor: (i) => rx[i % stats.activePairs],
    stats,
  };

  /** Reads transmit chain `c` (header and frame) into `pkt`; returns its length. */
  function readTx(queue, c) {
    const len = txBatch.readableBytes[c];
    if (len < NET_HDR_SIZE)
      throw new NetDeviceError("NET_SHORT_HEADER", `transmit chain of ${len} bytes, shorter than the ${NET_HDR_SIZE}-byte header`, { actual: len });
    if (len > NET_HDR_SIZE + MAX_FRAME)
      throw new NetDeviceError("NET_CHAIN_TOO_LONG", `transmit chain of ${len} bytes, frames end at ${MAX_FRAME}`, { actual: len });
    cursor = queue.segments(txBatch, c, cursor);
    let done = 0;
    while (done < len && cursor.next()) {
      if (cursor.writable) break;
      if (cursor.kind !== "host") throw new NetDeviceError("NET_BUFFER_NOT_MAPPED", "a transmit buffer outside the memory table");
      pkt.set(cursor.bytes, done);
      done += cursor.len;
    }
    return len;
  }

  /** The transmitq of pair `pair`: every popped batch is answered with one used-ring update and at most one notification per queue. */
  function transmit(ctx, pair) {
    const { queue } = ctx;
    const target = mode === "reflect" ? rx[pair] : mode === "switch" ? peer?.rxFor(pair) : undefined;
    try {
      for (let n; (n = queue.pop(txBatch)) > 0; ) {
        stats.receivedByPair[pair] += n;
        for (let c = 0; c < n; c++) {
          const len = readTx(queue, c);
          stats.received++;
          stats.receivedBytes += len - NET_HDR_SIZE;
          queue.addUsed(txBatch.head(c), 0);
          if (target === undefined) continue;
          if (mode === "reflect" && len >= NET_HDR_SIZE + 12) {
            for (let i = NET_HDR_SIZE; i < NET_HDR_SIZE + 6; i++) {
              const t = pkt[i];
              pkt[i] = pkt[i + 6];
              pkt[i + 6] = t;
            }
          }
          if (target.deliver(pkt, len)) stats.sent++, (stats.sentBytes += len - NET_HDR_SIZE);
          else stats.dropped++;
        }
        ctx.notify(); // the transmit buffers back first: a driver that hears the receiveq's call finds them returned
        target?.flush();
      }
    } catch (err) {
      target?.flush();
      if (!isVirtqueueError(err)) ctx.fail(err);
    }
  }

  /** `gen` mode: fills receiveq `pair` with frames until it has no buffer left or the count is reached. */
  function generate(pair) {
    const r = rx[pair];
    const len = genPkt.length;
    while (gen.count === 0 || stats.sent < gen.count) {
      if (!r.deliver(genPkt, len)) break;
      stats.sent++;
      stats.sentBytes += len - NET_HDR_SIZE;
    }
    r.flush();
  }

  /** The control queue: class, command, data; one ack byte back (docs/virtio-net.md#control-queue). */
  function control(ctx) {
    const { queue } = ctx;
    try {
      for (let n; (n = queue.pop(ctrlBatch)) > 0; ) {
        for (let c = 0; c < n; c++) {
          const readable = ctrlBatch.readableBytes[c];
          if (readable < 2 || readable > MAX_CTRL || ctrlBatch.writableBytes[c] < 1)
            throw new NetDeviceError("NET_CTRL_MALFORMED", `control command of ${readable} readable and ${ctrlBatch.writableBytes[c]} writable bytes`);
          cursor = queue.segments(ctrlBatch, c, cursor);
          let done = 0;
          while (done < readable && cursor.next() && !cursor.writable) {
            if (cursor.kind !== "host") throw new NetDeviceError("NET_BUFFER_NOT_MAPPED", "a control buffer outside the memory table");
            ctrlBuf.set(cursor.bytes, done);
            done += cursor.len;
          }
          const ack = command(ctrlBuf[0], ctrlBuf[1], ctrlBuf.subarray(2, readable));
          cursor = queue.segments(ctrlBatch, c, cursor);
          writeSegments(cursor, Uint8Array.of(ack), 0, 1);
          queue.addUsed(ctrlBatch.head(c), 1);
        }
        ctx.notify();
      }
    } catch (err) {
      if (!isVirtqueueError(err)) ctx.fail(err);
    }
  }

  function command(cls, cmd, data) {
    if (cls === CTRL_MQ && cmd === CTRL_MQ_VQ_PAIRS_SET && data.length >= 2) {
      const n = data[0] | (data[1] << 8);
      if (n < 1 || n > pairs) return ERR;
      stats.activePairs = n;
      return OK;
    }
    if (cls === CTRL_MAC && cmd === CTRL_MAC_ADDR_SET && data.length >= 6) return (config.set(data.subarray(0, 6), 0), OK);
    if (cls === CTRL_RX || cls === CTRL_MAC) return OK; // promiscuous, all-multicast, filter tables: every frame is delivered anyway
    return ERR;
  }

  port.device = {
    features: NetFeature.MAC | NetFeature.STATUS | NetFeature.CTRL_VQ | NetFeature.CTRL_RX | NetFeature.MQ | (mergeable ? NetFeature.MRG_RXBUF : 0n),
    queueCount: 2 * pairs + 1,
    maxQueueSize: 1024,
    getConfig(offset, size) {
      if (offset + size > config.length) throw new RangeError(`config 0x${offset.toString(16)}+0x${size.toString(16)} beyond ${config.length} bytes`);
      return config.slice(offset, offset + size);
    },
    featuresAcked(features) {
      for (const r of rx) r.mergeable = (features & NetFeature.MRG_RXBUF) !== 0n;
    },
    processQueue(ctx) {
      const i = ctx.index;
      if (i === 2 * pairs) return control(ctx);
      const pair = i >> 1;
      if ((i & 1) === 1) return transmit(ctx, pair);
      // A receiveq: the device fills it when it has frames, so buffers waiting there are no work
      // (false: not run again for them, no kick wanted); gen mode wants kicks until its count is out.
      rx[pair].attach(ctx);
      if (mode !== "gen") return false;
      generate(pair);
      return gen.count === 0 || stats.sent < gen.count ? undefined : false;
    },
    reset() {
      for (const r of rx) r.detach();
      stats.activePairs = 1;
    },
  };
  port.connect = (other) => {
    peer = other;
  };
  return port;
}
