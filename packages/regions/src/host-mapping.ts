/**
 * A live host mapping and its one lazily created byte view.
 * @module
 */
import { describeErrno, MAP, mmanErrno, mmapOrErrno, munmap, nativeView, pointerAt, PROT } from "@vhostkit/transport/sys";
import { RegionError, type RegionErrorDetail } from "./errors.js";
import type { HostWindow } from "./guest-memory.js";

/** Bytes covered by one lazily created view (typed arrays are capped near 4 GiB in Node 20). */
export const VIEW_CHUNK = 1 << 30;

/**
 * Host memory at a fixed address with a known length. Byte views are created once per 1 GiB chunk,
 * on first access (docs/performance.md#memory-views: `koffi.view` cost grows with length), and must never be touched
 * after the memory is unmapped or turned back into a PROT_NONE reservation.
 * @internal
 */
export class HostMapping {
  /** Host virtual address: never leaves the process. */
  readonly addr: bigint;
  /** Length in bytes. */
  readonly len: number;
  #views: (Uint8Array | undefined)[] = [];

  constructor(addr: bigint, len: number) {
    this.addr = addr;
    this.len = len;
  }

  /**
   * Bytes `[offset, offset + want)` (clamped to the end of the view chunk containing `offset`), as a
   * subarray of the chunk's view: the translation hot path, one allocation. Only call while the
   * mapping is accessible.
   */
  bytesAt(offset: number, want: number): Uint8Array {
    const i = Math.floor(offset / VIEW_CHUNK);
    const v = this.#views[i] ?? this.#view(i);
    const at = offset - i * VIEW_CHUNK;
    return v.subarray(at, Math.min(v.length, at + want));
  }

  /**
   * {@link HostMapping.bytesAt} without the subarray: fills `out` with the chunk's view, the index of
   * `offset` in it and the bytes available (clamped like `bytesAt`). Only call while the mapping is accessible.
   */
  windowAt(offset: number, want: number, out: HostWindow): void {
    const i = Math.floor(offset / VIEW_CHUNK);
    const v = this.#views[i] ?? this.#view(i);
    const at = offset - i * VIEW_CHUNK;
    out.view = v;
    out.offset = at;
    out.length = v.length - at < want ? v.length - at : want;
  }

  #view(i: number): Uint8Array {
    const start = i * VIEW_CHUNK;
    const v = new Uint8Array(nativeView(pointerAt(this.addr + BigInt(start)), Math.min(VIEW_CHUNK, this.len - start)));
    this.#views[i] = v;
    return v;
  }

  /** Forgets the views so they cannot be handed out again after an unmap. */
  forgetView(): void {
    this.#views = [];
  }
}

/**
 * `mmap(0, len, prot, MAP_SHARED, fd, fileOffset)`.
 * @throws RegionError `MMAP_FAILED` with errno.
 * @internal
 */
export function mapShared(fd: number, fileOffset: bigint, len: number, writable: boolean, detail: RegionErrorDetail): HostMapping {
  const prot = writable ? PROT.READ | PROT.WRITE : PROT.READ;
  const r = mmapOrErrno(0n, len, prot, MAP.SHARED, fd, fileOffset);
  if (!r.ok)
    throw new RegionError("MMAP_FAILED", `mmap of fd ${fd} at file offset 0x${fileOffset.toString(16)}: ${describeErrno(r.errno)}`, detail, {
      errno: r.errno,
      syscall: "mmap",
    });
  return new HostMapping(r.addr, len);
}

/**
 * `munmap` of a mapping this package created. A failure here would mean the bookkeeping is wrong;
 * it is reported as `MMAP_FAILED`.
 * @internal
 */
export function unmapHost(m: HostMapping): void {
  m.forgetView();
  // SAFETY: `m` was created by this package and is removed from every table before this call, so
  // nothing hands out its view afterwards.
  if (munmap(m.addr, m.len) !== 0) {
    const errno = mmanErrno();
    throw new RegionError("MMAP_FAILED", `munmap of 0x${m.len.toString(16)} bytes: ${describeErrno(errno)}`, {}, { errno, syscall: "munmap" });
  }
}
