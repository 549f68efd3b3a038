/**
 * A reusable, ring-format-independent snapshot of popped descriptor chains.
 *
 * @module
 */
import type { GuestAddress } from "@vhostkit/regions";

const TWO32 = 0x1_0000_0000;

/**
 * Chains popped by one {@link SplitQueue.pop} call, stored struct-of-arrays in preallocated typed
 * arrays so that popping allocates nothing per chain. Allocate one batch per queue (or per worker)
 * and reuse it: every `pop` overwrites it.
 *
 * Each chain's descriptors (direct ones and those of its indirect table, flattened in chain order)
 * were copied out of guest memory once, when popped, and validated: addresses do not wrap, lengths
 * are > 0, device-readable buffers come first. Later rewrites of the ring by the guest do not affect
 * the batch. Descriptor `j` of chain `i` is stored at flat index `start(i) + j`.
 *
 * The layout does not depend on the ring format, so a packed ring can fill the same batch.
 */
export class ChainBatch {
  /** Number of chains currently in the batch (set by `pop`). */
  count = 0;
  /** Maximum number of chains one `pop` stores. */
  readonly capacity: number;
  /** Head descriptor index (the id to return in the used element) of each chain. */
  readonly heads: Uint16Array;
  /** `starts[i]` .. `starts[i + 1]` is the flat descriptor range of chain `i` (length capacity + 1). */
  readonly starts: Int32Array;
  /** Total device-readable bytes of each chain (< 2^32 + 1). */
  readonly readableBytes: Float64Array;
  /** Total device-writable bytes of each chain (< 2^32 + 1). */
  readonly writableBytes: Float64Array;
  /** Low 32 bits of each descriptor's guest-physical address (flat index). Grows on demand. */
  addrLo: Uint32Array;
  /** High 32 bits of each descriptor's guest-physical address (flat index). */
  addrHi: Uint32Array;
  /** Byte length of each descriptor (flat index), >= 1. */
  lens: Uint32Array;
  /** 1 when the descriptor is device-writable, 0 when device-readable (flat index). */
  writable: Uint8Array;

  /**
   * @param capacity - most chains per pop (usually the queue size); >= 1.
   * @param descriptorCapacity - initial flat descriptor capacity; grows (doubling) when a pop needs more.
   */
  constructor(capacity = 256, descriptorCapacity = capacity * 4) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`batch capacity ${capacity} must be a positive integer`);
    this.capacity = capacity;
    this.heads = new Uint16Array(capacity);
    this.starts = new Int32Array(capacity + 1);
    this.readableBytes = new Float64Array(capacity);
    this.writableBytes = new Float64Array(capacity);
    const d = Math.max(16, descriptorCapacity | 0);
    this.addrLo = new Uint32Array(d);
    this.addrHi = new Uint32Array(d);
    this.lens = new Uint32Array(d);
    this.writable = new Uint8Array(d);
  }

  /** Current flat descriptor capacity. */
  get descriptorCapacity(): number {
    return this.lens.length;
  }

  /** Head index of chain `i` (0 <= i < count): the id for the used element. */
  head(i: number): number {
    return this.heads[i] ?? 0;
  }

  /** Number of (flattened) descriptors of chain `i`. */
  descriptorCount(i: number): number {
    return (this.starts[i + 1] ?? 0) - (this.starts[i] ?? 0);
  }

  /** Guest-physical address of flat descriptor `j`, as a bigint (allocates; not for hot loops). */
  address(j: number): GuestAddress {
    return ((BigInt(this.addrHi[j] ?? 0) << 32n) | BigInt(this.addrLo[j] ?? 0)) as GuestAddress;
  }

  /** Guest-physical address of flat descriptor `j` as a number when it is below 2^53, else -1. */
  addressNumber(j: number): number {
    const hi = this.addrHi[j] ?? 0;
    return hi < 0x200000 ? hi * TWO32 + (this.addrLo[j] ?? 0) : -1;
  }

  /** @internal Grows the flat descriptor store to at least `needed` entries, keeping contents. */
  grow(needed: number): void {
    let n = this.lens.length;
    while (n < needed) n *= 2;
    const lo = new Uint32Array(n);
    lo.set(this.addrLo);
    const hi = new Uint32Array(n);
    hi.set(this.addrHi);
    const ln = new Uint32Array(n);
    ln.set(this.lens);
    const w = new Uint8Array(n);
    w.set(this.writable);
    this.addrLo = lo;
    this.addrHi = hi;
    this.lens = ln;
    this.writable = w;
  }
}
