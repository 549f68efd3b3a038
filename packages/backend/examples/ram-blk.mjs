#!/usr/bin/env node
// A RAM-backed vhost-user-blk device on @vhostkit/backend, in about 190 lines (250 with its command line; 60 of them the allocation-free direct path); Node >= 20 and Bun:
//   node examples/ram-blk.mjs --socket /tmp/blk.sock [--size-mib 16] [--image FILE] [--file DISK] [--once] [--events] [--mem-rw] [--max-slots N] [--discard] [--sealed-memory] [--no-packed] [--latency-ms N] [--no-log] [--own-state-pipe]
// Prints "listening <path>" on stdout once the socket accepts connections. --file keeps the disk in
// DISK too (written through before each write completes, read again each time the device starts), so
// it survives a restart and two processes can take turns on it (live migration). --no-log: no dirty
// page logging (VHOST_F_LOG_ALL not offered: QEMU then refuses to migrate).
// --own-state-pipe: SET_DEVICE_STATE_FD answered with a pipe of the device's own (reply bit 8 clear).
// SIGTERM: stop accepting, let running requests finish, close everything, exit 0.
import { closeSync, existsSync, ftruncateSync, openSync, readFileSync, readSync, writeSync } from "node:fs";
import { parseArgs } from "node:util";
import { serve } from "@vhostkit/backend";
import { ChainBatch, readChain, writeChain } from "@vhostkit/virtqueue";

const T_IN = 0,
  T_OUT = 1,
  T_FLUSH = 4,
  T_GET_ID = 8,
  S_OK = 0,
  S_IOERR = 1,
  S_UNSUPP = 2; // virtio-blk request types, status byte
const F_SIZE_MAX = 1n << 1n,
  F_SEG_MAX = 1n << 2n,
  F_BLK_SIZE = 1n << 6n,
  F_FLUSH = 1n << 9n,
  MAX_IO = 1 << 20, // largest transfer served
  SEG_MAX = 126,
  SIZE_MAX = 8192, // advertised so that a driver's largest request (SEG_MAX segments of SIZE_MAX) stays within MAX_IO
  STATE_MAGIC = new TextEncoder().encode("vkramblk"),
  // With EVENT_IDX, used elements are published every PUBLISH_EVERY chains of a batch as well as at its
  // end: a driver waiting for a call starts on the first completions while the rest are served, and
  // then finds more at its re-check instead of waiting for the next call (qsd gets the same overlap by
  // completing requests one at a time). A publish past the index the driver asked for signals
  // nothing, so this adds no calls; without EVENT_IDX each publish may call, so a batch publishes once.
  PUBLISH_EVERY = 4;

/** A virtio-blk device over `disk` (bytes, a multiple of 512); `discard`: reads return no data and writes are dropped, like qemu's null-co; `written(offset, data)` runs before a write completes; `started()` runs each time the device starts; `packed: false` does not offer packed rings; `latencyMs`: each request takes that long (a slow disk). */
export function ramBlk(disk, { discard = false, written = undefined, started = undefined, packed = true, latencyMs = 0 } = {}) {
  const config = new Uint8Array(96),
    cv = new DataView(config.buffer); // virtio_blk_config (LE), zeros unused
  cv.setBigUint64(0, BigInt(disk.length / 512), true); // capacity in 512-byte sectors
  cv.setUint32(8, SIZE_MAX, true), cv.setUint32(12, SEG_MAX, true); // size_max, seg_max
  cv.setUint32(20, 512, true), cv.setUint16(34, 1, true); // blk_size, num_queues
  const batch = new ChainBatch(256);
  let inBuf = new Uint8Array(4112),
    outBuf = new Uint8Array(4097); // reused: requests run one at a time
  const scratch = (buf, n) => (buf.length >= n ? buf : new Uint8Array(n));
  return {
    features: F_SIZE_MAX | F_SEG_MAX | F_BLK_SIZE | F_FLUSH,
    queueCount: 1,
    maxQueueSize: 1024,
    packedRing: packed,
    start: () => started?.(),
    // Device state (SET_DEVICE_STATE_FD, docs/protocol.md#device-state-transfer): "vkramblk", the u64 disk size, the disk.
    async saveState(out) {
      const head = new Uint8Array(16);
      head.set(STATE_MAGIC), new DataView(head.buffer).setBigUint64(8, BigInt(disk.length), true);
      await out.write(head);
      for (let at = 0; at < disk.length; at += 1 << 20) await out.write(disk.subarray(at, Math.min(disk.length, at + (1 << 20))));
    },
    async loadState(input) {
      const head = await input.readExactly(16);
      if (!STATE_MAGIC.every((b, i) => head[i] === b)) throw new RangeError("not a ram-blk state (magic)");
      const size = new DataView(head.buffer).getBigUint64(8, true);
      if (size !== BigInt(disk.length)) throw new RangeError(`state of a 0x${size.toString(16)}-byte disk, this one has 0x${disk.length.toString(16)}`);
      const staged = await input.readExactly(disk.length); // all or nothing: a refused state leaves the disk as it was
      if (!(await input.atEnd())) throw new RangeError("trailing bytes after the disk");
      disk.set(staged), written?.(0, staged);
    },
    getConfig(offset, size) {
      if (offset + size > config.length) throw new RangeError(`config 0x${offset.toString(16)}+0x${size.toString(16)} too large`);
      return config.slice(offset, offset + size);
    },
    async processQueue({ queue, memory, notify }) {
      const every = queue.eventIdx ? PUBLISH_EVERY : 0;
      for (let n; (n = queue.pop(batch)) > 0; ) {
        for (let c = 0; c < n; c++) {
          if (latencyMs > 0) await new Promise((r) => setTimeout(r, latencyMs));
          let used = latencyMs > 0 ? -1 : serveNow(queue, c);
          if (used < 0) used = await request(queue, memory, c).catch(() => status(queue, memory, c, S_IOERR));
          queue.addUsed(batch.heads[c], used);
          if (every > 0 && c % every === every - 1 && c + 1 < n) notify();
        }
        notify(); // at the end of every batch (at most one call per batch without EVENT_IDX)
      }
    },
  };

  /**
   * Serves chain `c` without a promise or a copy through scratch when every buffer is in mapped memory
   * (reads go from the disk straight into the guest's buffers); returns the used length, or -1 for
   * `request` to serve it (a remote buffer, a write with a `written` hook, GET_ID, an error thrown).
   */
  function serveNow(queue, c) {
    const readable = batch.readableBytes[c],
      writable = batch.writableBytes[c];
    if (readable < 16 || writable < 1 || readable > MAX_IO + 16 || writable > MAX_IO + 1) return -1;
    try {
      const cur = queue.segments(batch, c),
        head = (inBuf = scratch(inBuf, readable));
      for (let got = 0; got < readable; got += cur.len) {
        if (!cur.next() || cur.writable || cur.kind !== "host" || got + cur.len > readable) return -1;
        const v = cur.view,
          o = cur.viewOffset,
          n = cur.len;
        if (n <= 64)
          for (let k = 0; k < n; k++) head[got + k] = v[o + k]; // the header: no subarray
        else head.set(cur.bytes, got);
      }
      const type = head[0] | (head[1] << 8) | (head[2] << 16) | (head[3] << 24),
        offset = (head[8] + head[9] * 2 ** 8 + head[10] * 2 ** 16 + head[11] * 2 ** 24 + (head[12] | (head[13] << 8)) * 2 ** 32) * 512;
      const inRange = (len) => len % 512 === 0 && head[14] === 0 && head[15] === 0 && offset + len <= disk.length;
      let data = 0, // bytes of `disk` from `offset` that go first; zeros follow up to the status byte
        fill = true,
        st = S_OK;
      if (type === T_IN) {
        if (!inRange(writable - 1)) st = S_IOERR;
        else if (discard)
          fill = false; // the status byte only, as null-co
        else data = writable - 1;
      } else if (type === T_OUT) {
        if (written !== undefined) return -1;
        if (!inRange(readable - 16)) st = S_IOERR;
        else if (!discard) disk.set(head.subarray(16, readable), offset);
      } else if (type !== T_FLUSH) return -1;
      for (let pos = 0; pos < writable; pos += cur.len) {
        if (!cur.next() || !cur.writable || cur.kind !== "host") return -1;
        const v = cur.view,
          at = cur.viewOffset - pos, // v[at + i] is byte i of the writable part
          end = pos + cur.len;
        if (fill) {
          if (pos < data) v.set(disk.subarray(offset + pos, offset + Math.min(end, data)), at + pos);
          const z = Math.max(pos, data),
            zEnd = Math.min(end, writable - 1); // never hand the guest bytes of an earlier request
          if (zEnd > z) v.fill(0, at + z, at + zEnd);
        }
        if (end === writable) v[at + writable - 1] = st;
        if (fill || end === writable) cur.markWritten(cur.len);
      }
      return writable;
    } catch {
      return -1; // `request` meets the same error and answers it as before
    }
  }

  /** Sets only the status byte (the last writable one): IOERR for a buffer the device could not reach (e.g. an unmapped remote range). */
  async function status(queue, memory, c, s) {
    const cur = queue.segments(batch, c);
    let host,
      addr,
      len = 0;
    while (cur.next()) if (cur.writable) (len = cur.len), (host = cur.kind === "host" ? cur.bytes : undefined), (addr = cur.addr);
    if (host)
      (host[len - 1] = s), queue.dirtyLog?.mark(addr + BigInt(len - 1), 1); // written through a view: logged here (docs/protocol.md#dirty-page-logging)
    else if (len > 0) await memory.write(addr + BigInt(len - 1), new Uint8Array([s])).catch(() => undefined);
    return 1;
  }

  /** Serves chain `c` of `batch`; returns the used length (bytes written, status included). */
  async function request(queue, memory, c) {
    const readable = batch.readableBytes[c],
      writable = batch.writableBytes[c];
    if (readable < 16 || writable < 1) return 0; // malformed: nothing to answer into
    if (readable > MAX_IO + 16 || writable > MAX_IO + 1) return status(queue, memory, c, S_IOERR); // bounded scratch
    const head = (inBuf = scratch(inBuf, readable)).subarray(0, readable);
    await readChain(queue.segments(batch, c), memory, head);
    const hv = new DataView(head.buffer, head.byteOffset, 16),
      type = hv.getUint32(0, true);
    const offset = Number(hv.getBigUint64(8, true)) * 512;
    const reply = (data, status) => {
      const out = (outBuf = scratch(outBuf, writable)).subarray(0, writable); // the status is the last writable byte
      const n = Math.min(data.length, writable - 1);
      out.set(data.subarray(0, n));
      out.fill(0, n, writable - 1); // never hand the guest bytes of an earlier request
      out[writable - 1] = status;
      return writeChain(queue.segments(batch, c), memory, out);
    };
    const inRange = (len) => len % 512 === 0 && offset + len <= disk.length;
    switch (type) {
      case T_IN: {
        const len = writable - 1;
        if (discard && inRange(len)) return status(queue, memory, c, S_OK).then(() => writable);
        return inRange(len) ? reply(disk.subarray(offset, offset + len), S_OK) : reply(new Uint8Array(0), S_IOERR);
      }
      case T_OUT: {
        const data = head.subarray(16);
        if (!inRange(data.length)) return reply(new Uint8Array(0), S_IOERR);
        if (!discard) disk.set(data, offset), written?.(offset, data);
        return reply(new Uint8Array(0), S_OK);
      }
      case T_FLUSH:
        return reply(new Uint8Array(0), S_OK);
      case T_GET_ID:
        return reply(new TextEncoder().encode("vhostkit-ram-blk"), S_OK);
      default:
        return reply(new Uint8Array(0), S_UNSUPP);
    }
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: {
      socket: { type: "string" },
      "size-mib": { type: "string", default: "16" },
      image: { type: "string" },
      file: { type: "string" },
      once: { type: "boolean", default: false },
      events: { type: "boolean", default: false },
      "mem-rw": { type: "boolean", default: false },
      "max-slots": { type: "string" },
      discard: { type: "boolean", default: false },
      "sealed-memory": { type: "boolean", default: false },
      "no-packed": { type: "boolean", default: false },
      "latency-ms": { type: "string", default: "0" },
      "no-log": { type: "boolean", default: false },
      "own-state-pipe": { type: "boolean", default: false },
    },
  });
  if (!values.socket) throw new Error("--socket PATH is required");
  const disk = new Uint8Array(Number(values["size-mib"]) * 1024 * 1024);
  if (values.image) disk.set(readFileSync(values.image).subarray(0, disk.length));
  const fd = values.file ? openSync(values.file, existsSync(values.file) ? "r+" : "w+") : undefined;
  if (fd !== undefined) ftruncateSync(fd, disk.length), readSync(fd, disk, 0, disk.length, 0);
  const onEvent = values.events
    ? (e) =>
        (e.kind !== "request" || /INFLIGHT|LOG/.test(e.name)) &&
        process.stdout.write(
          e.kind === "inflight"
            ? `event inflight queue ${e.index} resubmitted ${e.resubmitted}\n`
            : `event ${e.kind} ${e.error?.code ?? ""} ${e.name ?? ""} ${e.error?.message ?? ""}\n`,
        )
    : undefined;
  const server = serve(
    values.socket,
    ramBlk(disk, {
      discard: values.discard,
      packed: !values["no-packed"],
      latencyMs: Number(values["latency-ms"]),
      started: fd === undefined ? undefined : () => readSync(fd, disk, 0, disk.length, 0),
      written: fd === undefined ? undefined : (offset, data) => writeSync(fd, data, 0, data.length, offset),
    }),
    {
      memRw: values["mem-rw"],
      dirtyLog: !values["no-log"],
      ownStatePipe: values["own-state-pipe"],
      requireSealedMemory: values["sealed-memory"],
      ...(values["max-slots"] ? { maxMemSlots: Number(values["max-slots"]) } : {}),
      ...(values.once ? { connections: 1 } : {}),
      ...(onEvent ? { onEvent } : {}),
    },
  );
  process.stdout.write(`listening ${server.path}\n`);
  process.once("SIGTERM", () => void server.shutdown({ graceMs: 5000 }));
  await server.done;
  if (fd !== undefined) closeSync(fd);
  process.exit(0);
}
