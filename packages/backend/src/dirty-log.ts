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
 * One mapped log bitmap. Marks only ever set bits, each with one atomic OR on the aligned 32-bit
 * word holding it: the front-end reads and clears the log concurrently, and QEMU hands one log to
 * every vhost device of a VM, so other back-end processes set bits in the same bytes at the same
 * time. Pages past the end of the log are not recorded. After
 * {@link DirtyLog.dispose} marks do nothing, so a write racing a replaced log never touches an
 * unmapped range.
 */
export class DirtyLog implements DirtyLogger {
  /** Bytes of bitmap (`mmap_size`). */
  readonly size: number;
  readonly #addr: bigint;
  readonly #mappedLen: number;
  /** Bit number (from the page-aligned mapping start) of the log's first bit: the log's offset in the page, in bits. */
  readonly #bit0: number;
  #words: Int32Array | undefined;

  private constructor(addr: bigint, mappedLen: number, delta: number, size: number) {
    this.#addr = addr;
    this.#mappedLen = mappedLen;
    this.size = size;
    this.#bit0 = delta * 8;
    // SAFETY: the mapping starts page-aligned and spans whole pages, so the whole words over its
    // first `mappedLen` bytes (at most 3 bytes more) are mapped; the view is dropped before the munmap.
    this.#words = new Int32Array(nativeView(pointerAt(addr), Math.ceil(mappedLen / 4) * 4));
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
    const w = this.#words;
    if (w === undefined || len <= 0) return;
    const limit = this.size * 8;
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
    // Page numbers reach 2^33: no 32-bit shifts on them. Bit n of the little-endian log (bit n % 8
    // of byte n / 8) is bit n % 32 of 32-bit word n / 32, counted from the page-aligned start. One
    // Atomics.or per page on an Int32Array: a plain read-modify-write could drop a bit another
    // process set in the same byte between our read and our write (a page not migrated). Not
    // Atomics.or on a Uint8Array view: Bun 1.4.5's optimizing JIT lost those stores to native
    // memory in a long-running back-end (the marks of a later connection vanished,
    // docs/protocol.md#dirty-page-logging); the word form is not affected.
    const bit0 = this.#bit0;
    for (let page = first; page <= last; page++) {
      const bit = bit0 + page;
      Atomics.or(w, Math.floor(bit / 32), 1 << (bit % 32));
    }
  }

  /** True when the bit of the page holding `gpa` is set. */
  isMarked(gpa: number): boolean {
    const w = this.#words;
    const page = Math.floor(gpa / LOG_PAGE_SIZE);
    if (w === undefined || page >= this.size * 8) return false;
    const bit = this.#bit0 + page;
    return ((Atomics.load(w, Math.floor(bit / 32)) >>> (bit % 32)) & 1) === 1;
  }

  /** Unmaps the log; later marks do nothing. Idempotent. */
  dispose(): void {
    if (this.#words === undefined) return;
    this.#words = undefined;
    // SAFETY: the only view was dropped above; `#addr` maps `#mappedLen` bytes of ours.
    munmap(this.#addr, this.#mappedLen);
  }
}
