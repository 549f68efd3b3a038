/**
 * The library side of the virtqueue benchmark, runtime-neutral (run by Bun and by Node on the built
 * packages). Same ring operations as tools/bench/c/virtqueue-ring.c: a queue of 256 in mmapped memfd
 * memory; each round the "driver" bumps avail.idx by a ring's worth of chains, the device pops them
 * with `SplitQueue.pop`, returns them with `pushUsed` and publishes with `publishUsed` (which also
 * makes the notification decision).
 * Usage: virtqueue-node.mjs <descs-per-chain 1|3> <milliseconds>. Prints chains/s.
 */
import { ChainBatch, SplitQueue } from "@vhostkit/virtqueue";
import { MAP, MFD, PROT, ftruncate, memfdCreate, mmap, nativeView } from "@vhostkit/transport/sys";

const Q = 256;
const per = Number(process.argv[2] ?? 1);
const ms = Number(process.argv[3] ?? 500);
const bytes = 1 << 20;

const fd = memfdCreate("vq-bench", MFD.CLOEXEC);
if (fd < 0 || ftruncate(fd, BigInt(bytes)) !== 0) throw new Error("memfd failed");
const m = mmap(0n, bytes, PROT.READ | PROT.WRITE, MAP.SHARED, fd, 0n);
const mem = new Uint8Array(nativeView(m.ptr, bytes));

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

const descOff = 0;
const availOff = 16 * Q;
const usedOff = (availOff + 6 + 2 * Q + 3) & ~3;
const dv = new DataView(mem.buffer, mem.byteOffset, mem.byteLength);
const chains = Math.floor(Q / per);
for (let c = 0; c < chains; c++) {
  for (let j = 0; j < per; j++) {
    const d = c * per + j;
    dv.setBigUint64(descOff + 16 * d, BigInt(0x10000 + d * 64), true);
    dv.setUint32(descOff + 16 * d + 8, 64, true);
    dv.setUint16(descOff + 16 * d + 12, (j < per - 1 ? 1 : 0) | (j > 0 ? 2 : 0), true);
    dv.setUint16(descOff + 16 * d + 14, j < per - 1 ? d + 1 : 0, true);
  }
}
for (let s = 0; s < Q; s++) dv.setUint16(availOff + 4 + 2 * s, per * (s % chains), true);

const queue = new SplitQueue({ size: Q, memory, addresses: { desc: BigInt(descOff), avail: BigInt(availOff), used: BigInt(usedOff) } });
queue.start(0);
const batch = new ChainBatch(Q);
const avail16 = new Uint16Array(mem.buffer, mem.byteOffset + availOff, 2);

let total = 0;
let notify = 0;
let t0 = 0;
for (let phase = 0; phase < 2; phase++) {
  t0 = performance.now();
  const end = t0 + (phase === 0 ? 300 : ms);
  total = 0;
  while (performance.now() < end) {
    for (let r = 0; r < 64; r++) {
      // driver: publish a ring's worth of chains (release store, as the C loop does)
      Atomics.store(avail16, 1, (avail16[1] + chains) & 0xffff);
      // device
      const n = queue.pop(batch);
      queue.pushUsed(batch, batch.writableBytes);
      if (queue.publishUsed()) notify++;
      total += n;
    }
  }
}
const secs = (performance.now() - t0) / 1e3;
if (notify === 0) throw new Error("no notification decided");
console.log(String(Math.round(total / secs)));
