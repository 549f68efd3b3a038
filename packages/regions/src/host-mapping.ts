/**
 * A live host mapping and its one lazily created byte view.
 * @module
 */
import { MAP, mmanErrno, mmapOrErrno, munmap, nativeView, PROT, type NativePointer } from "@vhostkit/transport/sys";
import { RegionError, type RegionErrorDetail } from "./errors.js";

/**
 * Host memory at a fixed address with a known length. The `Uint8Array` view is created once, on
 * first access (PERF-NOTES: `koffi.view` cost grows with length), and must never be touched after
 * the memory is unmapped or turned back into a PROT_NONE reservation.
 * @internal
 */
export class HostMapping {
  /** Host virtual address: never leaves the process. */
  readonly addr: bigint;
  /** Length in bytes. */
  readonly len: number;
  readonly #ptr: NativePointer;
  #view: Uint8Array | undefined;

  constructor(addr: bigint, ptr: NativePointer, len: number) {
    this.addr = addr;
    this.#ptr = ptr;
    this.len = len;
  }

  /** The bytes of the mapping (created on first use). Only call while the mapping is accessible. */
  bytes(): Uint8Array {
    this.#view ??= new Uint8Array(nativeView(this.#ptr, this.len));
    return this.#view;
  }

  /** Forgets the view so it cannot be handed out again after an unmap. */
  forgetView(): void {
    this.#view = undefined;
  }
}

/**
 * `mmap(0, len, prot, MAP_SHARED, fd, fileOffset)`.
 * @throws RegionError `mmap-failed` with errno.
 * @internal
 */
export function mapShared(fd: number, fileOffset: bigint, len: number, writable: boolean, detail: RegionErrorDetail): HostMapping {
  const prot = writable ? PROT.READ | PROT.WRITE : PROT.READ;
  const r = mmapOrErrno(0n, len, prot, MAP.SHARED, fd, fileOffset);
  if (!r.ok) throw new RegionError("mmap-failed", `mmap of fd ${fd} at file offset 0x${fileOffset.toString(16)} failed (errno ${r.errno})`, detail, { errno: r.errno, syscall: "mmap" });
  return new HostMapping(r.addr, r.ptr, len);
}

/**
 * `munmap` of a mapping this package created. A failure here would mean the bookkeeping is wrong;
 * it is reported as `mmap-failed`.
 * @internal
 */
export function unmapHost(m: HostMapping): void {
  m.forgetView();
  // SAFETY: `m` was created by this package and is removed from every table before this call, so
  // nothing hands out its view afterwards.
  if (munmap(m.addr, m.len) !== 0) {
    const errno = mmanErrno();
    throw new RegionError("mmap-failed", `munmap of 0x${m.len.toString(16)} bytes failed (errno ${errno})`, {}, { errno, syscall: "munmap" });
  }
}
