/**
 * The error type of `@vhostkit/regions`.
 * @module
 */
import { isVhostUserError, VhostUserError, type ErrorDetail } from "@vhostkit/wire";

/**
 * Why a region operation failed. Codes are stable; branch on them, not on messages.
 *
 * - `ZERO_SIZE`: a region, mapping or access of length 0.
 * - `MISALIGNED`: an offset or length that must be a multiple of the page size is not.
 * - `OVERFLOW`: `addr + len` (or `offset + len`) wraps u64, or a size does not fit a JS number.
 * - `OUT_OF_BOUNDS`: a range leaves its region (shmem region, fd size, access range).
 * - `OVERLAP`: a new region or mapping touches an existing one (GPA or user-address space).
 * - `DUPLICATE`: the exact same region (or shmid) is already present.
 * - `NOT_FOUND`: REM_MEM_REG / unmap names no existing region or mapping (exact match required).
 * - `UNKNOWN_SHMID`: the shmid has no region on this device (absent or zero-sized).
 * - `BAD_FLAGS`: unknown SHMEM_MAP flag bits (only bit 0, read-write, is defined).
 * - `TOO_MANY`: a slot or mapping cap would be exceeded.
 * - `BAD_CONFIG`: an invalid shared-memory configuration (sizes, count, placement).
 * - `BAD_FD`: a negative, closed or unusable fd.
 * - `UNSEALED`: a regular file without `F_SEAL_SHRINK` where a sealed one is required (its owner
 *   could truncate it under the mapping).
 * - `MMAP_FAILED`: a system call failed; `errno` and `syscall` say which.
 * - `UNMAPPED`: an access touches guest-physical space no live region or mapping backs.
 * - `READ_ONLY`: a write touches a read-only mapping.
 * - `DISPOSED`: the object was disposed.
 */
export type RegionErrorCode =
  | "ZERO_SIZE"
  | "MISALIGNED"
  | "OVERFLOW"
  | "OUT_OF_BOUNDS"
  | "OVERLAP"
  | "DUPLICATE"
  | "NOT_FOUND"
  | "UNKNOWN_SHMID"
  | "BAD_FLAGS"
  | "TOO_MANY"
  | "BAD_CONFIG"
  | "BAD_FD"
  | "UNSEALED"
  | "MMAP_FAILED"
  | "UNMAPPED"
  | "READ_ONLY"
  | "DISPOSED";

/** Structured detail of a {@link RegionError}: the common fields plus region-specific ones. */
export interface RegionErrorDetail extends ErrorDetail {
  /** VIRTIO Shared Memory Region id involved, if any. */
  readonly shmid?: number;
  /** Guest-physical address involved, if any. */
  readonly guestPhysAddr?: bigint;
  /** Length in bytes involved, if any. */
  readonly len?: bigint;
}

/**
 * Error thrown by `@vhostkit/regions`. `errno`/`syscall` are set when a system call failed
 * (`MMAP_FAILED`, `BAD_FD`), 0 / `""` otherwise.
 */
export class RegionError extends VhostUserError<RegionErrorCode> {
  /** errno of the failed system call, 0 when none failed. */
  readonly errno: number;
  /** Name of the failed system call, `""` when none. */
  readonly syscall: string;
  /** Region-specific structured detail (same object as `detail`). */
  readonly regionDetail: RegionErrorDetail;

  /**
   * @param code - stable reason.
   * @param message - lowercase message naming the values involved (hex addresses).
   * @param detail - structured detail.
   * @param sys - failed system call and errno, if any.
   */
  constructor(code: RegionErrorCode, message: string, detail: RegionErrorDetail = {}, sys: { errno: number; syscall: string } = { errno: 0, syscall: "" }) {
    super(code, message, detail);
    this.regionDetail = detail;
    this.errno = sys.errno;
    this.syscall = sys.syscall;
  }
}

/** True when `x` is a {@link RegionError} (brand check plus class name; works across package copies). */
export function isRegionError(x: unknown): x is RegionError {
  return isVhostUserError(x) && x.name === "RegionError";
}
