/**
 * The library side of the virtqueue benchmark, runtime-neutral (run by Bun and by Node on the built
 * packages). Same ring operations per mode as tools/bench/c/virtqueue-ring.c, over a queue in
 * mmapped memfd memory (256 descriptors; packed: chains x descs-per-chain, 256 or 255, one lap per
 * round); each round moves a full ring's worth of chains through the public API:
 *
 * - split-device (default): the "driver" bumps avail.idx by a ring's worth of chains (slots and
 *   descriptors laid once); the device pops them with `SplitQueue.pop`, returns them with
 *   `pushUsed` and publishes with `publishUsed` (which also makes the notification decision).
 * - packed-device: the "driver" marks every descriptor available for this lap (flags, and the
 *   head's len the device overwrote); the device does the same with a `PackedQueue`.
 * - split-driver / packed-driver: `SplitDriver` / `PackedDriver` add every chain (buffers built
 *   once and reused) and `publish` (the kick decision); a bare "device" returns every chain in order
 *   (split: used elements and used.idx; packed: used descriptors, the first one's flags last); the
 *   driver takes them back with `collectUsed`.
 *
 * Usage: virtqueue-node.mjs <descs-per-chain 1|3> <milliseconds> [mode]. Prints chains/s.
 */
import { ChainBatch, PackedQueue, SplitQueue } from "@vhostkit/virtqueue";
import { PackedDriver, SplitDriver } from "@vhostkit/virtqueue/driver";
import { MAP, MFD, PROT, ftruncate, memfdCreate, mmap, nativeView } from "@vhostkit/transport/sys";

const Q = 256;
const per = Number(process.argv[2] ?? 1);
const ms = Number(process.argv[3] ?? 500);
const mode = process.argv[4] ?? "split-device";
const bytes = 1 << 20;
const chains = Math.floor(Q / per);
const QP = chains * per;
const NEXT = 1;
const WRITE = 2;
const AVAIL = 0x80;
const USED = 0x8000;

const fd = memfdCreate("vq-bench", MFD.CLOEXEC);
if (fd < 0 || ftruncate(fd, BigInt(bytes)) !== 0) throw new Error("memfd failed");
const m = mmap(0n, bytes, PROT.READ | PROT.WRITE, MAP.SHARED, fd, 0n);
const mem = new Uint8Array(nativeView(m.ptr, bytes));
const u16 = new Uint16Array(mem.buffer, mem.byteOffset, bytes >>> 1);
const u32 = new Uint32Array(mem.buffer, mem.byteOffset, bytes >>> 2);

/** A one-region GuestMemory over the mapping (one view, created once). */
const memory = {
  translate(addr, len) {
    const a = Number(addr);
    if (a >= bytes) return { ok: false, miss: { kind: "unmapped", addr } };
    return { ok: true, span: { bytes: mem.subarray(a, a + Math.min(len, bytes - a)), writable: true } };
  },
  async read(addr, dst) {
    dst.set(mem.subarray(Number(addr), Number(addr) + dst.length));
  },
  async write(addr, src) {
    mem.set(src, Number(addr));
  },
};

const split = { desc: 0n, avail: BigInt(16 * Q), used: BigInt((16 * Q + 6 + 2 * Q + 3) & ~3) };
const packed = { desc: 0n, avail: BigInt(16 * QP), used: BigInt(16 * QP + 4) };
/** The flags of descriptor `j` of a chain, without the available bits: NEXT but the last, WRITE but the first. */
const chainFlags = (j) => (j < per - 1 ? NEXT : 0) | (j > 0 ? WRITE : 0);
let notify = 0;

/** split-device: as the C loop, the ring laid once; returns one round. */
function splitDevice() {
  const dv = new DataView(mem.buffer, mem.byteOffset, mem.byteLength);
  for (let d = 0; d < chains * per; d++) {
    dv.setBigUint64(16 * d, BigInt(0x10000 + d * 64), true);
    dv.setUint32(16 * d + 8, 64, true);
    dv.setUint16(16 * d + 12, chainFlags(d % per), true);
    dv.setUint16(16 * d + 14, d % per < per - 1 ? d + 1 : 0, true);
  }
  for (let s = 0; s < Q; s++) u16[(Number(split.avail) >>> 1) + 2 + s] = per * (s % chains);
  const queue = new SplitQueue({ size: Q, memory, addresses: split });
  queue.start(0);
  const batch = new ChainBatch(Q);
  const idx = (Number(split.avail) >>> 1) + 1;
  return () => {
    Atomics.store(u16, idx, (u16[idx] + chains) & 0xffff); // driver: publish (release, as the C loop)
    const n = queue.pop(batch);
    queue.pushUsed(batch, batch.writableBytes);
    if (queue.publishUsed()) notify++;
    return n;
  };
}

/** packed-device: the driver marks this lap's descriptors available, the first head last. */
function packedDevice() {
  const base = new Uint16Array(QP);
  for (let d = 0; d < QP; d++) {
    u32[4 * d] = 0x10000 + d * 64;
    u32[4 * d + 2] = 64;
    u16[8 * d + 6] = Math.floor(d / per);
    base[d] = chainFlags(d % per);
    u16[8 * d + 7] = 0; // used in the lap before the first
  }
  const queue = new PackedQueue({ size: QP, memory, addresses: packed });
  queue.start();
  const batch = new ChainBatch(QP);
  let wrap = 1;
  return () => {
    const bits = wrap === 1 ? AVAIL : USED;
    for (let d = QP - 1; d > 0; d--) {
      if (d % per === 0) u32[4 * d + 2] = 64;
      u16[8 * d + 7] = base[d] | bits;
    }
    u32[2] = 64;
    Atomics.store(u16, 7, base[0] | bits);
    wrap ^= 1;
    const n = queue.pop(batch);
    queue.pushUsed(batch, batch.writableBytes);
    if (queue.publishUsed()) notify++;
    return n;
  };
}

/** Each chain's buffers, built once: the first device-readable, the rest device-writable. */
function buffers() {
  return Array.from({ length: chains }, (_, c) => {
    const b = Array.from({ length: per }, (_, j) => ({ addr: BigInt(0x10000 + (c * per + j) * 64), len: 64 }));
    return { readable: b.slice(0, 1), writable: b.slice(1) };
  });
}

/** split-driver: add + publish, a bare device returns every chain in order, collectUsed. */
function splitDriver() {
  const driver = new SplitDriver({ size: Q, memory, addresses: split });
  const bufs = buffers();
  const avail = Number(split.avail) >>> 1;
  const used = Number(split.used) >>> 2;
  const usedIdx = (Number(split.used) >>> 1) + 1;
  let seen = 0;
  return () => {
    for (let c = 0; c < chains; c++) driver.add(bufs[c].readable, bufs[c].writable, c);
    if (driver.publish()) notify++;
    // bare device
    const to = u16[avail + 1];
    let ui = u16[usedIdx];
    for (; seen !== to; seen = (seen + 1) & 0xffff, ui = (ui + 1) & 0xffff) {
      const slot = ui & (Q - 1);
      u32[used + 1 + 2 * slot] = u16[avail + 2 + (seen & (Q - 1))];
      u32[used + 2 + 2 * slot] = (per - 1) * 64;
    }
    Atomics.store(u16, usedIdx, ui);
    return driver.collectUsed().length;
  };
}

/** packed-driver: add + publish, a bare device marks every list used in order, collectUsed. */
function packedDriver() {
  const driver = new PackedDriver({ size: QP, memory, addresses: packed });
  const bufs = buffers();
  let pos = 0;
  let wrap = 1;
  return () => {
    for (let c = 0; c < chains; c++) driver.add(bufs[c].readable, bufs[c].writable, c);
    if (driver.publish()) notify++;
    // bare device
    const first = pos;
    let firstFlags = 0;
    for (let c = 0; c < chains; c++) {
      const flags = (wrap === 1 ? AVAIL | USED : 0) | (per > 1 ? WRITE : 0);
      u32[4 * pos + 2] = (per - 1) * 64;
      if (c === 0) firstFlags = flags;
      else u16[8 * pos + 7] = flags;
      pos += per;
      if (pos >= QP) {
        pos -= QP;
        wrap ^= 1;
      }
    }
    Atomics.store(u16, 8 * first + 7, firstFlags);
    return driver.collectUsed().length;
  };
}

const modes = { "split-device": splitDevice, "packed-device": packedDevice, "split-driver": splitDriver, "packed-driver": packedDriver };
if (!(mode in modes)) throw new Error(`unknown mode ${mode}`);
const round = modes[mode]();
let total = 0;
let t0 = 0;
for (let phase = 0; phase < 2; phase++) {
  t0 = performance.now();
  const end = t0 + (phase === 0 ? 300 : ms);
  total = 0;
  while (performance.now() < end) {
    for (let r = 0; r < 64; r++) {
      const n = round();
      if (n !== chains) throw new Error(`${mode}: ${n} chains in a round, expected ${chains}`);
      total += n;
    }
  }
}
const secs = (performance.now() - t0) / 1e3;
if (notify === 0) throw new Error("no notification decided");
console.log(String(Math.round(total / secs)));
