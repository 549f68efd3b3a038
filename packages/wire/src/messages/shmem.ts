/**
 * VIRTIO Shared Memory Region payloads of the upstream-family dialects (docs/shmem.md#region-query, docs/shmem.md#map-payload):
 * `VhostUserMMap` (BACKEND_SHMEM_MAP / UNMAP) and `VhostUserShMemConfig` (GET_SHMEM_CONFIG reply).
 * @module
 */
import { checkNoOverflow, checkValue } from "../codec/checked-math.js";
import type { PayloadCodec } from "../codec/payload-codec.js";
import { fixedSize } from "../codec/payload-codec.js";
import { MAX_SHMEM_REGIONS, SHMEM_CONFIG_SIZE } from "../limits.js";

/** `VhostUserMMap.flags` bits (u64). Bit 0 clear = read-only; no other bit is defined. */
export const MMapFlag = {
  /** Map read-write. */
  RW: 1n,
} as const;

/**
 * `VhostUserMMap` (40 bytes, docs/shmem.md#map-payload): 0:u8 shmid, 1–7 padding, 8:u64 fd_offset,
 * 16:u64 shm_offset, 24:u64 len, 32:u64 flags. Offsets and length are in bytes.
 */
export interface MMapRequest {
  /** VIRTIO Shared Memory Region id (u8). */
  readonly shmid: number;
  /** Offset in bytes into the attached fd (UNMAP: unused, sent as 0). */
  readonly fdOffset: bigint;
  /** Offset in bytes from the start of region `shmid`. */
  readonly shmOffset: bigint;
  /** Mapping length in bytes; non-zero. */
  readonly len: bigint;
  /** {@link MMapFlag} bits (UNMAP: unused, sent as 0). */
  readonly flags: bigint;
}

/** Size in bytes of `VhostUserMMap`. */
export const MMAP_REQUEST_SIZE = 40;

function validateMMap(request: string, v: MMapRequest): void {
  checkValue((v.flags & ~MMapFlag.RW) === 0n, request, () => `unknown map flags 0x${v.flags.toString(16)}`, v.flags);
  checkValue(v.len !== 0n, request, () => "mapping length 0", 0n);
  checkNoOverflow(request, v.fdOffset, v.len, "fd_offset + len");
  checkNoOverflow(request, v.shmOffset, v.len, "shm_offset + len");
}

/**
 * `VhostUserMMap` codec (40 bytes). The 7 padding bytes are written as zero and accepted non-zero
 * on decode (docs/shmem.md#padding; the spec does not require zero).
 * @throws WireError `BAD_VALUE` (flags other than bit 0, len 0), `OVERFLOW` (fd_offset/shm_offset + len).
 */
export const MMapRequestCodec: PayloadCodec<MMapRequest> = {
  ...fixedSize("VhostUserMMap", MMAP_REQUEST_SIZE),
  encode(w, v) {
    validateMMap(w.request, v);
    w.u8(v.shmid);
    w.zeros(7);
    w.u64(v.fdOffset);
    w.u64(v.shmOffset);
    w.u64(v.len);
    w.u64(v.flags);
  },
  decode(r) {
    const shmid = r.u8();
    r.skip(7);
    const v: MMapRequest = { shmid, fdOffset: r.u64(), shmOffset: r.u64(), len: r.u64(), flags: r.u64() };
    validateMMap(r.request, v);
    return v;
  },
};

/**
 * `VhostUserShMemConfig` (2056 bytes, docs/shmem.md#region-query): 0:u32 nregions, 4:u32 padding,
 * 8 + 8·i: u64 memory_sizes[i] for i = 0..255. Entry i describes **shmid i**; 0 = unused.
 * `nregions` counts the non-zero entries (it is not a prefix length).
 */
export interface ShmemConfig {
  /** Number of non-zero entries of `sizes`, at most 256. */
  readonly nregions: number;
  /** Region sizes in bytes indexed by shmid; decode returns all 256, encode accepts ≤ 256 (rest 0). */
  readonly sizes: readonly bigint[];
}

/** Build a consistent {@link ShmemConfig} from sizes indexed by shmid (≤ 256 entries, 0 = unused). */
export function makeShmemConfig(sizes: readonly bigint[]): ShmemConfig {
  let n = 0;
  for (const s of sizes) if (s !== 0n) n++;
  return { nregions: n, sizes };
}

function validateShmemConfig(request: string, nregions: number, sizes: readonly bigint[]): void {
  checkValue(nregions <= MAX_SHMEM_REGIONS, request, () => `nregions ${nregions} exceeds ${MAX_SHMEM_REGIONS}`, nregions);
  checkValue(sizes.length <= MAX_SHMEM_REGIONS, request, () => `${sizes.length} region sizes, at most ${MAX_SHMEM_REGIONS}`, sizes.length);
  let n = 0;
  for (const s of sizes) if (s !== 0n) n++;
  checkValue(n === nregions, request, () => `nregions ${nregions} but ${n} non-zero region sizes`, nregions);
}

/**
 * Shmem config codec (fixed 2056 bytes). Padding written as zero, not checked on decode.
 * @throws WireError `BAD_VALUE` when nregions > 256 or differs from the count of non-zero sizes.
 */
export const ShmemConfigCodec: PayloadCodec<ShmemConfig> = {
  ...fixedSize("shmem config", SHMEM_CONFIG_SIZE),
  encode(w, v) {
    validateShmemConfig(w.request, v.nregions, v.sizes);
    w.u32(v.nregions);
    w.zeros(4);
    for (const s of v.sizes) w.u64(s);
    w.zeros(8 * (MAX_SHMEM_REGIONS - v.sizes.length));
  },
  decode(r) {
    const nregions = r.u32();
    checkValue(nregions <= MAX_SHMEM_REGIONS, r.request, () => `nregions ${nregions} exceeds ${MAX_SHMEM_REGIONS}`, nregions);
    r.skip(4);
    r.need(8 * MAX_SHMEM_REGIONS);
    const sizes = new Array<bigint>(MAX_SHMEM_REGIONS);
    const view = r.view;
    let p = r.pos;
    for (let i = 0; i < MAX_SHMEM_REGIONS; i++, p += 8) sizes[i] = view.getBigUint64(p, true);
    r.pos = p;
    validateShmemConfig(r.request, nregions, sizes);
    return { nregions, sizes };
  },
};
