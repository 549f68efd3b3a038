/**
 * crosvm-legacy dialect payloads (docs/shmem.md#crosvm-legacy-layouts, crosvm before Dec 2025): `VhostUserShmemMapMsg`
 * (id 1000, 32 bytes), `VhostUserShmemUnmapMsg` (id 1001, 24 bytes) and the
 * GET_SHARED_MEMORY_REGIONS reply (id 1004, 8 + 16·N bytes). Padding is written as zero and not
 * checked on decode, as for `VhostUserMMap`.
 * @module
 */
import { checkNoOverflow, checkValue } from "../codec/checked-math.js";
import type { PayloadCodec } from "../codec/payload-codec.js";
import { fixedSize } from "../codec/payload-codec.js";
import { MAX_SHMEM_REGIONS } from "../limits.js";

/** `VhostUserShmemMapMsg.flags` bits (u8). */
export const CrosvmMapFlag = {
  /** Readable. */
  MAP_R: 0x1,
  /** Writable. */
  MAP_W: 0x2,
} as const;

/** `VhostUserShmemMapMsg` (32 bytes): 0:u8 flags, 1:u8 shmid, 2–7 pad, 8:u64 shm_offset, 16:u64 fd_offset, 24:u64 len. */
export interface CrosvmShmemMap {
  /** {@link CrosvmMapFlag} bits. */
  readonly flags: number;
  /** Shared memory region id (u8). */
  readonly shmid: number;
  /** Offset in bytes inside the region (note: before `fdOffset` on the wire). */
  readonly shmOffset: bigint;
  /** Offset in bytes into the attached fd. */
  readonly fdOffset: bigint;
  /** Length in bytes; non-zero. */
  readonly len: bigint;
}

function validateMap(request: string, v: CrosvmShmemMap): void {
  checkValue((v.flags & ~0x3) === 0, request, () => `unknown crosvm map flags 0x${v.flags.toString(16)}`, v.flags);
  checkValue(v.len !== 0n, request, () => "mapping length 0", 0n);
  checkNoOverflow(request, v.shmOffset, v.len, "shm_offset + len");
  checkNoOverflow(request, v.fdOffset, v.len, "fd_offset + len");
}

/** crosvm SHMEM_MAP codec (32 bytes). @throws WireError `BAD_VALUE` (flags > 3, len 0), `OVERFLOW`. */
export const CrosvmShmemMapCodec: PayloadCodec<CrosvmShmemMap> = {
  ...fixedSize("VhostUserShmemMapMsg", 32),
  encode(w, v) {
    validateMap(w.request, v);
    w.u8(v.flags);
    w.u8(v.shmid);
    w.zeros(6);
    w.u64(v.shmOffset);
    w.u64(v.fdOffset);
    w.u64(v.len);
  },
  decode(r) {
    const flags = r.u8();
    const shmid = r.u8();
    r.skip(6);
    const v = { flags, shmid, shmOffset: r.u64(), fdOffset: r.u64(), len: r.u64() };
    validateMap(r.request, v);
    return v;
  },
};

/** `VhostUserShmemUnmapMsg` (24 bytes): 0:u8 shmid, 1–7 pad, 8:u64 shm_offset, 16:u64 len. */
export interface CrosvmShmemUnmap {
  /** Shared memory region id (u8). */
  readonly shmid: number;
  /** Offset in bytes inside the region. */
  readonly shmOffset: bigint;
  /** Length in bytes; non-zero. */
  readonly len: bigint;
}

/** crosvm SHMEM_UNMAP codec (24 bytes). @throws WireError `BAD_VALUE` (len 0), `OVERFLOW`. */
export const CrosvmShmemUnmapCodec: PayloadCodec<CrosvmShmemUnmap> = {
  ...fixedSize("VhostUserShmemUnmapMsg", 24),
  encode(w, v) {
    checkValue(v.len !== 0n, w.request, () => "mapping length 0", 0n);
    checkNoOverflow(w.request, v.shmOffset, v.len, "shm_offset + len");
    w.u8(v.shmid);
    w.zeros(7);
    w.u64(v.shmOffset);
    w.u64(v.len);
  },
  decode(r) {
    const shmid = r.u8();
    r.skip(7);
    const v = { shmid, shmOffset: r.u64(), len: r.u64() };
    checkValue(v.len !== 0n, r.request, () => "mapping length 0", 0n);
    checkNoOverflow(r.request, v.shmOffset, v.len, "shm_offset + len");
    return v;
  },
};

/** One `VhostSharedMemoryRegion` (16 bytes): 0:u8 id, 1–7 pad, 8:u64 length. */
export interface CrosvmSharedMemoryRegion {
  /** Region id (u8). */
  readonly id: number;
  /** Region length in bytes. */
  readonly length: bigint;
}

/** GET_SHARED_MEMORY_REGIONS reply: 0:u64 count, then count × 16-byte regions (count ≤ 256). */
export interface CrosvmSharedMemoryRegions {
  /** The regions in wire order. */
  readonly regions: readonly CrosvmSharedMemoryRegion[];
}

/**
 * GET_SHARED_MEMORY_REGIONS reply codec (8 + 16·N bytes, N ≤ 256).
 * @throws WireError `BAD_VALUE` (count > 256), `BAD_SIZE` (size ≠ 8 + 16·count).
 */
export const CrosvmSharedMemoryRegionsCodec: PayloadCodec<CrosvmSharedMemoryRegions> = {
  layout: "shared memory regions",
  minSize: 8,
  maxSize: 8 + 16 * MAX_SHMEM_REGIONS,
  sizeOf: (v) => 8 + 16 * v.regions.length,
  encode(w, v) {
    checkValue(v.regions.length <= MAX_SHMEM_REGIONS, w.request, () => `${v.regions.length} regions, at most ${MAX_SHMEM_REGIONS}`, v.regions.length);
    w.u64(BigInt(v.regions.length));
    for (const region of v.regions) {
      w.u8(region.id);
      w.zeros(7);
      w.u64(region.length);
    }
  },
  decode(r) {
    const count = r.u64();
    checkValue(count <= BigInt(MAX_SHMEM_REGIONS), r.request, () => `region count ${count} exceeds ${MAX_SHMEM_REGIONS}`, count);
    const n = Number(count);
    r.requireLength([8 + 16 * n], `count ${n}`);
    const regions: CrosvmSharedMemoryRegion[] = [];
    for (let i = 0; i < n; i++) {
      const id = r.u8();
      r.skip(7);
      regions.push({ id, length: r.u64() });
    }
    return { regions };
  },
};
