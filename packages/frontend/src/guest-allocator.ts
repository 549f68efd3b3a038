/**
 * A small first-fit allocator over guest-physical RAM for rings and request buffers.
 * @module
 */
import { guestAddress, type GuestAddress } from "@vhostkit/regions";
import { FrontendError } from "./errors.js";

interface Free {
  start: bigint;
  len: bigint;
}

/**
 * First-fit allocator of guest-physical ranges inside `[base, base + size)`. Allocations are
 * rounded up to 16 bytes; freed ranges are coalesced. Not thread-safe (JS is single-threaded).
 */
export class GuestAllocator {
  readonly #free: Free[];
  readonly #used = new Map<bigint, bigint>();

  /**
   * @param base - guest-physical start of the managed RAM (bytes).
   * @param size - managed length in bytes.
   */
  constructor(base: bigint, size: bigint) {
    this.#free = [{ start: base, len: size }];
  }

  /** Bytes currently allocated. */
  get allocatedBytes(): bigint {
    let n = 0n;
    for (const l of this.#used.values()) n += l;
    return n;
  }

  /**
   * Allocates `len` bytes aligned to `align` (a power of two, default 16).
   * @throws FrontendError `bad-argument` (len not positive), `out-of-memory`.
   */
  alloc(len: number | bigint, align = 16): GuestAddress {
    const want = BigInt(len);
    if (want <= 0n) throw new FrontendError("bad-argument", `guest allocation of ${want} bytes`, { actual: want });
    const a = BigInt(Math.max(16, align));
    const size = (want + 15n) & ~15n;
    for (let i = 0; i < this.#free.length; i++) {
      const f = this.#free[i] as Free;
      const start = (f.start + a - 1n) & ~(a - 1n);
      const pad = start - f.start;
      if (pad + size > f.len) continue;
      const tail = { start: start + size, len: f.len - pad - size };
      const parts: Free[] = [];
      if (pad > 0n) parts.push({ start: f.start, len: pad });
      if (tail.len > 0n) parts.push(tail);
      this.#free.splice(i, 1, ...parts);
      this.#used.set(start, size);
      return guestAddress(start);
    }
    throw new FrontendError("out-of-memory", `no room for 0x${want.toString(16)} bytes in guest RAM`, { expected: want });
  }

  /** Frees an allocation returned by {@link GuestAllocator.alloc}; unknown addresses are ignored. */
  free(addr: GuestAddress | bigint): void {
    const len = this.#used.get(addr);
    if (len === undefined) return;
    this.#used.delete(addr);
    let i = this.#free.findIndex((f) => f.start > addr);
    if (i < 0) i = this.#free.length;
    this.#free.splice(i, 0, { start: addr, len });
    // Coalesce with neighbours.
    for (const j of [i, i - 1]) {
      const a = this.#free[j];
      const b = this.#free[j + 1];
      if (a !== undefined && b !== undefined && a.start + a.len === b.start) {
        a.len += b.len;
        this.#free.splice(j + 1, 1);
      }
    }
  }
}
