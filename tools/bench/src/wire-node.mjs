// Measurement loop of the wire benchmark, run as a child under Bun (process.execPath) and Node.
// Usage: wire-node.mjs <wire|baseline> <message|mix> <iterations>. Prints nanoseconds per message
// (one encode + one decode of a whole frame) on its last line.
//   wire:     @vhostkit/wire (built dist/): encodeMessage/encodeReply + decodeMessage/decodeReply,
//             with every syntax check (sizes, reserved bits, overflow, alignment, nregions).
//   baseline: a bare hand-written DataView encoder/decoder of the same bytes, no validation.
import { decodeMessage, decodeReply, encodeMessage, encodeReply, makeShmemConfig } from "@vhostkit/wire";

const impl = process.argv[2] ?? "wire";
const which = process.argv[3] ?? "mix";
const n = Number(process.argv[4] ?? 200000);

const addr = { index: 1, flags: 0, descAddr: 0x7f00_0010_0000n, usedAddr: 0x7f00_0010_2000n, availAddr: 0x7f00_0010_1000n, logAddr: 0n };
const regions = Array.from({ length: 8 }, (_, i) => ({
  guestPhysAddr: BigInt(i) << 32n,
  memorySize: 0x4000_0000n,
  userAddr: 0x7f00_0000_0000n + (BigInt(i) << 32n),
  mmapOffset: 0n,
}));
const map = { shmid: 1, fdOffset: 0n, shmOffset: 0x1_0000n, len: 0x4000n, flags: 1n };
const shmem = makeShmemConfig(Array.from({ length: 256 }, (_, i) => (i === 1 ? 0x40_0000n : i === 3 ? 0x1_0000n : 0n)));

const wire = {
  SET_VRING_ADDR: () => decodeMessage("frontend", encodeMessage("frontend", "SET_VRING_ADDR", 1, addr)).value,
  "SET_MEM_TABLE(8)": () => decodeMessage("frontend", encodeMessage("frontend", "SET_MEM_TABLE", 9, { regions })).value,
  SHMEM_MAP: () => decodeMessage("backend", encodeMessage("backend", "BACKEND_SHMEM_MAP", 9, map)).value,
  "GET_SHMEM_CONFIG reply": () => decodeReply("frontend", encodeReply("frontend", "GET_SHMEM_CONFIG", shmem)).value,
};

function frame(request, flags, size) {
  const out = new Uint8Array(12 + size);
  const v = new DataView(out.buffer);
  v.setUint32(0, request, true);
  v.setUint32(4, flags, true);
  v.setUint32(8, size, true);
  return { out, v };
}
function head(bytes) {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return { v, request: v.getUint32(0, true), flags: v.getUint32(4, true), size: v.getUint32(8, true) };
}
const baseline = {
  SET_VRING_ADDR: () => {
    const { out, v } = frame(9, 1, 40);
    v.setUint32(12, addr.index, true);
    v.setUint32(16, addr.flags, true);
    v.setBigUint64(20, addr.descAddr, true);
    v.setBigUint64(28, addr.usedAddr, true);
    v.setBigUint64(36, addr.availAddr, true);
    v.setBigUint64(44, addr.logAddr, true);
    const h = head(out);
    return {
      index: h.v.getUint32(12, true),
      flags: h.v.getUint32(16, true),
      descAddr: h.v.getBigUint64(20, true),
      usedAddr: h.v.getBigUint64(28, true),
      availAddr: h.v.getBigUint64(36, true),
      logAddr: h.v.getBigUint64(44, true),
    };
  },
  "SET_MEM_TABLE(8)": () => {
    const { out, v } = frame(5, 9, 8 + 32 * regions.length);
    v.setUint32(12, regions.length, true);
    let p = 20;
    for (const r of regions) {
      v.setBigUint64(p, r.guestPhysAddr, true);
      v.setBigUint64(p + 8, r.memorySize, true);
      v.setBigUint64(p + 16, r.userAddr, true);
      v.setBigUint64(p + 24, r.mmapOffset, true);
      p += 32;
    }
    const h = head(out);
    const nr = h.v.getUint32(12, true);
    const got = [];
    for (let i = 0, q = 20; i < nr; i++, q += 32)
      got.push({
        guestPhysAddr: h.v.getBigUint64(q, true),
        memorySize: h.v.getBigUint64(q + 8, true),
        userAddr: h.v.getBigUint64(q + 16, true),
        mmapOffset: h.v.getBigUint64(q + 24, true),
      });
    return { regions: got };
  },
  SHMEM_MAP: () => {
    const { out, v } = frame(9, 9, 40);
    v.setUint8(12, map.shmid);
    v.setBigUint64(20, map.fdOffset, true);
    v.setBigUint64(28, map.shmOffset, true);
    v.setBigUint64(36, map.len, true);
    v.setBigUint64(44, map.flags, true);
    const h = head(out);
    return {
      shmid: h.v.getUint8(12),
      fdOffset: h.v.getBigUint64(20, true),
      shmOffset: h.v.getBigUint64(28, true),
      len: h.v.getBigUint64(36, true),
      flags: h.v.getBigUint64(44, true),
    };
  },
  "GET_SHMEM_CONFIG reply": () => {
    const { out, v } = frame(44, 5, 2056);
    v.setUint32(12, shmem.nregions, true);
    for (let i = 0; i < 256; i++) v.setBigUint64(20 + 8 * i, shmem.sizes[i] ?? 0n, true);
    const h = head(out);
    const sizes = new Array(256);
    for (let i = 0; i < 256; i++) sizes[i] = h.v.getBigUint64(20 + 8 * i, true);
    return { nregions: h.v.getUint32(12, true), sizes };
  },
};

const table = impl === "baseline" ? baseline : wire;
const fns = which === "mix" ? Object.values(table) : [table[which]];
if (fns.some((f) => typeof f !== "function")) throw new Error(`unknown message ${which}`);
let sink = 0;
const once = (i) => {
  const v = fns[i % fns.length]();
  if (v !== undefined) sink++;
};
for (let i = 0; i < Math.min(20000, n); i++) once(i); // warm-up (JIT)
const t0 = process.hrtime.bigint();
for (let i = 0; i < n; i++) once(i);
const ns = Number(process.hrtime.bigint() - t0) / n;
if (sink === 0) throw new Error("nothing decoded");
console.log(ns.toFixed(1));
