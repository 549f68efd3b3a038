/**
 * A small allocator over guest-physical RAM for rings and request buffers.
 * @module
 */
import { guestAddress, type GuestAddress } from "@vhostkit/regions";
import { FrontendError } from "./errors.js";

interface Free {
  start: number;
  len: number;
}

/** Freed blocks up to this size wait on a per-size list for reuse instead of being coalesced. */
const QUICK_MAX = 64 * 1024;
/** Most blocks one per-size list keeps; more are coalesced into the free list at once. */
const QUICK_DEPTH = 1024;

/**
 * First-fit allocator of guest-physical ranges inside `[base, base + size)`. Allocations are
 * rounded up to 16 bytes; freed ranges are coalesced. Freed blocks of up to 64 KiB are first kept
 * on a per-size list and handed out again by the next allocation of that size (request buffers
 * come and go at a steady rate: this keeps the free list short); when first fit finds no room,
 * those blocks are coalesced back and the search is repeated, so they never cause an
 * out-of-memory. Addresses are numbers inside (guest RAM lies below 2^53). Not thread-safe (JS is
 * single-threaded).
 */
export class GuestAllocator {
  readonly #free: Free[];
  /** Live allocations: start → rounded size. */
  readonly #used = new Map<number, number>();
  /** Freed small blocks by rounded size, reused last-in first-out. */
  readonly #quick = new Map<number, number[]>();
  #quickCount = 0;

  /**
   * @param base - guest-physical start of the managed RAM (bytes).
   * @param size - managed length in bytes.
   * @throws FrontendError `BAD_ARGUMENT` when the range is negative or reaches past 2^53.
   */
  constructor(base: bigint, size: bigint) {
    if (base < 0n || size < 0n || base + size > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new FrontendError("BAD_ARGUMENT", `guest allocator range 0x${base.toString(16)}+0x${size.toString(16)} is not below 2^53`, { actual: base + size });
    }
    this.#free = size > 0n ? [{ start: Number(base), len: Number(size) }] : [];
  }

  /** Bytes currently allocated. */
  get allocatedBytes(): bigint {
    let n = 0;
    for (const l of this.#used.values()) n += l;
    return BigInt(n);
  }

  /**
   * Allocates `len` bytes aligned to `align` (a power of two, default 16).
   * @throws FrontendError `BAD_ARGUMENT` (len not positive), `OUT_OF_MEMORY`.
   */
  alloc(len: number | bigint, align = 16): GuestAddress {
    const want = Number(len);
    if (!(want > 0) || !Number.isSafeInteger(want))
      throw new FrontendError("BAD_ARGUMENT", `guest allocation of ${len} bytes`, { actual: BigInt(Number.isSafeInteger(want) ? want : 0) });
    const a = Math.max(16, align);
    const size = Math.ceil(want / 16) * 16;
    if (a === 16) {
      const hit = this.#quick.get(size)?.pop();
      if (hit !== undefined) {
        this.#quickCount--;
        this.#used.set(hit, size);
        return guestAddress(BigInt(hit));
      }
    }
    let start = this.#firstFit(size, a);
    if (start < 0 && this.#quickCount > 0) {
      this.#flushQuick();
      start = this.#firstFit(size, a);
    }
    if (start < 0) throw new FrontendError("OUT_OF_MEMORY", `no room for 0x${want.toString(16)} bytes in guest RAM`, { expected: BigInt(want) });
    this.#used.set(start, size);
    return guestAddress(BigInt(start));
  }

  /** Frees an allocation returned by {@link GuestAllocator.alloc}; unknown addresses are ignored. */
  free(addr: GuestAddress | bigint): void {
    const at = Number(addr);
    const len = this.#used.get(at);
    if (len === undefined) return;
    this.#used.delete(at);
    if (len <= QUICK_MAX) {
      let list = this.#quick.get(len);
      if (list === undefined) this.#quick.set(len, (list = []));
      if (list.length < QUICK_DEPTH) {
        list.push(at);
        this.#quickCount++;
        return;
      }
    }
    this.#release(at, len);
  }

  /** First fit of `size` bytes aligned to `align` in the free list; the start, or -1. */
  #firstFit(size: number, align: number): number {
    const list = this.#free;
    for (let i = 0; i < list.length; i++) {
      const f = list[i] as Free;
      const start = Math.ceil(f.start / align) * align;
      const pad = start - f.start;
      if (pad + size > f.len) continue;
      const tail = f.len - pad - size;
      if (pad > 0 && tail > 0) {
        f.len = pad;
        list.splice(i + 1, 0, { start: start + size, len: tail });
      } else if (pad > 0) f.len = pad;
      else if (tail > 0) {
        f.start = start + size;
        f.len = tail;
      } else list.splice(i, 1);
      return start;
    }
    return -1;
  }

  /** Returns `[at, at + len)` to the free list, coalescing with its neighbours. */
  #release(at: number, len: number): void {
    const list = this.#free;
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((list[mid] as Free).start < at) lo = mid + 1;
      else hi = mid;
    }
    const prev = list[lo - 1];
    const next = list[lo];
    if (prev !== undefined && prev.start + prev.len === at) {
      prev.len += len;
      if (next !== undefined && prev.start + prev.len === next.start) {
        prev.len += next.len;
        list.splice(lo, 1);
      }
    } else if (next !== undefined && at + len === next.start) {
      next.start = at;
      next.len += len;
    } else list.splice(lo, 0, { start: at, len });
  }

  #flushQuick(): void {
    for (const [len, starts] of this.#quick) for (const at of starts) this.#release(at, len);
    this.#quick.clear();
    this.#quickCount = 0;
  }
}
