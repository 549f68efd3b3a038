/**
 * The dirty page log of one connection (docs/protocol.md#dirty-page-logging): the shared bitmap
 * SET_LOG_BASE hands over (LOG_SHMFD), one bit per 4 KiB page of guest-physical memory, which the
 * device sets for every page it writes while VHOST_F_LOG_ALL is acknowledged.
 * @module
 */
import { describeErrno, fstatSize, MAP, mmapOrErrno, munmap, nativeView, pointerAt, PROT } from "@vhostkit/transport/sys";
import type { DirtyLogger } from "@vhostkit/virtqueue";
import type { LogArea } from "@vhostkit/wire";
import { BackendError, protocolError } from "./errors.js";

/** Bytes of guest memory one log bit stands for. */
export const LOG_PAGE_SIZE = 4096;

/** The largest log accepted: 1 GiB of bitmap covers 32 TiB of guest memory. */
const MAX_LOG_BYTES = 1n << 30n;

const PAGE = 4096n;

/**
 * One mapped log bitmap. Marks only ever set bits (the front-end reads and clears them
 * concurrently, atomically); pages past the end of the log are not recorded. After
 * {@link DirtyLog.dispose} marks do nothing, so a write racing a replaced log never touches an
 * unmapped range.
 */
export class DirtyLog implements DirtyLogger {
  /** Bytes of bitmap (`mmap_size`). */
  readonly size: number;
  readonly #addr: bigint;
  readonly #mappedLen: number;
  #bytes: Uint8Array | undefined;

  private constructor(addr: bigint, mappedLen: number, delta: number, size: number) {
    this.#addr = addr;
    this.#mappedLen = mappedLen;
    this.size = size;
    // SAFETY: the view covers exactly the mapped bytes and is dropped before the munmap.
    this.#bytes = new Uint8Array(nativeView(pointerAt(addr), mappedLen), delta, size);
  }

  /**
   * SET_LOG_BASE: maps `area.mmapSize` bytes at `area.mmapOffset` of `fd` (borrowed). The fd must
   * be a regular file (QEMU's sealed memfd) holding the whole range, the size in 1..1 GiB.
   * @throws BackendError `PROTOCOL` for a bad size, offset or fd; `UNSUPPORTED` when the mapping fails.
   */
  static map(request: string, area: LogArea, fd: number): DirtyLog {
    if (area.mmapSize === 0n || area.mmapSize > MAX_LOG_BYTES)
      throw protocolError(request, `mmap_size 0x${area.mmapSize.toString(16)} not in 1..0x${MAX_LOG_BYTES.toString(16)}`, { actual: area.mmapSize });
    const st = fstatSize(fd);
    if (st === undefined || !st.regular) throw protocolError(request, "the log fd is not a regular file");
    const end = area.mmapOffset + area.mmapSize;
    if (st.size < end)
      throw protocolError(request, `file of 0x${st.size.toString(16)} bytes, log ends at 0x${end.toString(16)}`, { expected: end, actual: st.size });
    const base = area.mmapOffset - (area.mmapOffset % PAGE);
    const delta = Number(area.mmapOffset - base);
    const len = delta + Number(area.mmapSize);
    const r = mmapOrErrno(0n, len, PROT.READ | PROT.WRITE, MAP.SHARED, fd, base);
    if (!r.ok) throw new BackendError("UNSUPPORTED", `${request.toLowerCase()}: mmap of the log: ${describeErrno(r.errno)}`, { request });
    return new DirtyLog(r.addr, len, delta, Number(area.mmapSize));
  }

  /** Sets the bit of every page of `[gpa, gpa + len)` that the log covers. */
  mark(gpa: number | bigint, len: number): void {
    const b = this.#bytes;
    if (b === undefined || len <= 0) return;
    const limit = b.length * 8;
    let first: number;
    let last: number;
    if (typeof gpa === "number") {
      first = Math.floor(gpa / LOG_PAGE_SIZE);
      last = Math.floor((gpa + len - 1) / LOG_PAGE_SIZE);
    } else {
      const f = gpa / PAGE;
      if (f >= BigInt(limit)) return;
      first = Number(f);
      last = Number((gpa + BigInt(len) - 1n) / PAGE);
    }
    if (last >= limit) last = limit - 1;
    // Page numbers reach 2^33: no 32-bit shifts on them. A plain read-modify-write of each byte, not
    // Atomics.or: this JS thread is the log's only setter, so no mark of ours is ever lost; the
    // front-end's atomic read-and-clear racing it can at worst find a bit it already took set again
    // (a page sent twice). Bun 1.4.5's optimizing JIT loses Atomics.or stores to a view of native
    // memory once a later log replaces an earlier one in the same process (the marks of a second or
    // later connection vanished; none with the FTL JIT off or with this store).
    for (let page = first; page <= last; page++) {
      const i = Math.floor(page / 8);
      b[i] = (b[i] as number) | (1 << (page % 8));
    }
  }

  /** True when the bit of the page holding `gpa` is set. */
  isMarked(gpa: number): boolean {
    const b = this.#bytes;
    const page = Math.floor(gpa / LOG_PAGE_SIZE);
    const byte = Math.floor(page / 8);
    return b !== undefined && byte < b.length && (((b[byte] as number) >> (page & 7)) & 1) === 1;
  }

  /** Unmaps the log; later marks do nothing. Idempotent. */
  dispose(): void {
    if (this.#bytes === undefined) return;
    this.#bytes = undefined;
    // SAFETY: the only view was dropped above; `#addr` maps `#mappedLen` bytes of ours.
    munmap(this.#addr, this.#mappedLen);
  }
}
