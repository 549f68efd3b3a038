// The receive side of one virtio-net queue pair (docs/virtio-net.md#receive-buffers): the device
// holds the buffers it popped from the driver's receiveq until frames fill them, one buffer per frame
// or, with VIRTIO_NET_F_MRG_RXBUF, as many as a frame needs (num_buffers in the first one's header).
// Frames are written synchronously through host views; used elements are published once per batch.
import { ChainBatch, isVirtqueueError } from "@vhostkit/virtqueue";

/** Size of struct virtio_net_hdr with VERSION_1 (num_buffers included). */
export const NET_HDR_SIZE = 12;

/** A guest error in a virtio-net queue, with a SCREAMING_SNAKE `code` (docs/virtio-net.md#hostile-drivers). */
export class NetDeviceError extends Error {
  /** @param code - NET_SHORT_HEADER, NET_CHAIN_TOO_LONG, NET_RX_BUFFER_TOO_SMALL, NET_BUFFER_NOT_MAPPED or NET_CTRL_MALFORMED. */
  constructor(code, message, detail = {}) {
    super(message);
    this.name = "NetDeviceError";
    this.code = code;
    this.detail = detail;
  }
}

/** Writes `n` bytes of `src` from `off` into the device-writable host segments of `cursor`'s chain. */
export function writeSegments(cursor, src, off, n) {
  let done = 0;
  while (done < n && cursor.next()) {
    if (!cursor.writable) continue;
    if (cursor.kind !== "host") throw new NetDeviceError("NET_BUFFER_NOT_MAPPED", "a buffer outside the memory table");
    const m = Math.min(cursor.len, n - done);
    cursor.bytes.set(src.subarray(off + done, off + done + m));
    cursor.markWritten(m);
    done += m;
  }
  return done;
}

/** The receiveq of one queue pair, as the device fills it. */
export class RxPort {
  /** VIRTIO_NET_F_MRG_RXBUF acknowledged: a frame may span several buffers. */
  mergeable = false;
  #ctx = undefined;
  #queue = undefined;
  #failed = false;
  /** Two batches: the current one from #pos, then the next one when #nextLoaded (popped, not used yet). */
  #batches = [new ChainBatch(256), new ChainBatch(256)];
  #cur = 0;
  #pos = 0;
  #nextLoaded = false;
  #dirty = false;
  #cursor = undefined;
  #pick = { batch: undefined, chain: 0 };

  /** The queue handler ran for this receiveq: buffers popped from an earlier ring are forgotten. */
  attach(ctx) {
    if (ctx.queue !== this.#queue) {
      this.#queue = ctx.queue;
      this.#failed = false;
      this.#batches[0].count = this.#batches[1].count = 0;
      this.#cur = this.#pos = 0;
      this.#nextLoaded = false;
    }
    this.#ctx = ctx;
  }

  /** The device reset: nothing is held any more. */
  detach() {
    this.#ctx = this.#queue = undefined;
  }

  /** True when frames can be delivered now (the ring runs and is not broken). */
  get usable() {
    const q = this.#queue;
    return q !== undefined && !this.#failed && q.started && q.brokenBy === undefined;
  }

  /**
   * Delivers the frame in `pkt[NET_HDR_SIZE, len)`; `pkt[0, NET_HDR_SIZE)` is overwritten with the
   * receive header. Returns false when the frame was dropped: no ring, or not enough buffers.
   * A guest error (a buffer too small, outside the memory table) breaks this receiveq only.
   */
  deliver(pkt, len) {
    if (!this.usable) return false;
    try {
      const k = this.#count(len);
      if (k === 0) return false;
      pkt.fill(0, 0, 10);
      pkt[10] = k & 0xff;
      pkt[11] = k >> 8;
      const q = this.#queue;
      for (let i = 0, off = 0; i < k; i++) {
        const { batch, chain } = this.#take();
        const n = Math.min(batch.writableBytes[chain], len - off);
        this.#cursor = q.segments(batch, chain, this.#cursor);
        if (writeSegments(this.#cursor, pkt, off, n) !== n) throw new NetDeviceError("NET_BUFFER_NOT_MAPPED", "a receive buffer shorter than it claims");
        q.addUsed(batch.head(chain), n);
        off += n;
      }
      this.#dirty = true;
      return true;
    } catch (err) {
      this.fail(err);
      return false;
    }
  }

  /** Publishes what was delivered since the last flush and signals the driver if it asked (one call per batch). */
  flush() {
    if (!this.#dirty) return;
    this.#dirty = false;
    if (this.usable) this.#ctx.notify();
  }

  /** Breaks this receiveq with `err` (ring errors already broke it). */
  fail(err) {
    this.#failed = true;
    if (!isVirtqueueError(err)) this.#ctx?.fail(err);
  }

  /** How many held buffers frame length `len` needs (0: not enough buffers now); pops more when needed. */
  #count(len) {
    let k = 0;
    let room = 0;
    for (let i = 0; room < len; i++) {
      const at = this.#at(i);
      if (at === undefined) return 0;
      const w = at.batch.writableBytes[at.chain];
      if (!this.mergeable && w < len)
        throw new NetDeviceError("NET_RX_BUFFER_TOO_SMALL", `receive buffer of ${w} bytes for a ${len}-byte frame (no MRG_RXBUF)`, {
          expected: len,
          actual: w,
        });
      if (w < NET_HDR_SIZE)
        throw new NetDeviceError("NET_RX_BUFFER_TOO_SMALL", `receive buffer of ${w} bytes, smaller than the header`, { expected: NET_HDR_SIZE, actual: w });
      room += w;
      k++;
    }
    if (k > 0xffff) return 0;
    return k;
  }

  /** Held buffer `i` (0 = the next to use), popping a batch when the held ones run out. */
  #at(i) {
    let b = this.#batches[this.#cur];
    if (this.#pos >= b.count && this.#nextLoaded) {
      this.#cur ^= 1;
      this.#pos = 0;
      this.#nextLoaded = false;
      b = this.#batches[this.#cur];
    }
    if (this.#pos >= b.count) {
      this.#pos = 0;
      if (this.#queue.pop(b) === 0) return undefined;
    }
    const inCur = b.count - this.#pos;
    if (i < inCur) return this.#set(b, this.#pos + i);
    const next = this.#batches[this.#cur ^ 1];
    if (!this.#nextLoaded) {
      if (this.#queue.pop(next) === 0) return undefined;
      this.#nextLoaded = true;
    }
    return i - inCur < next.count ? this.#set(next, i - inCur) : undefined;
  }

  /** Consumes the next held buffer (one {@link RxPort.#count} said is there). */
  #take() {
    const at = this.#at(0);
    this.#pos++;
    return at;
  }

  #set(batch, chain) {
    this.#pick.batch = batch;
    this.#pick.chain = chain;
    return this.#pick;
  }
}
