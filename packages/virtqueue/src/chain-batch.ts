/**
 * A reusable, ring-format-independent snapshot of popped descriptor chains.
 *
 * @module
 */
import type { GuestAddress } from "@vhostkit/regions";
import { DescFlag } from "./layout.js";

const TWO32 = 0x1_0000_0000;

/**
 * Chains popped by one `pop` call ({@link SplitQueue.pop}, {@link PackedQueue.pop}), stored struct-of-arrays in preallocated typed
 * arrays so that popping allocates nothing per chain. Allocate one batch per queue (or per worker)
 * and reuse it: every `pop` overwrites it.
 *
 * Each chain's descriptors (direct ones and those of its indirect table, flattened in chain order)
 * were copied out of guest memory once, when popped, and validated: addresses do not wrap, lengths
 * are > 0, device-readable buffers come first. Later rewrites of the ring by the guest do not affect
 * the batch. Descriptor `j` of chain `i` is stored at flat index `start(i) + j`.
 *
 * The layout does not depend on the ring format: split and packed rings fill the same batch.
 */
export class ChainBatch {
  /** Number of chains currently in the batch (set by `pop`). */
  count = 0;
  /** Maximum number of chains one `pop` stores. */
  readonly capacity: number;
  /** The id to return in each chain's used element: the head descriptor index (split) or the buffer ID (packed). */
  readonly heads: Uint16Array;
  /** `starts[i]` .. `starts[i + 1]` is the flat descriptor range of chain `i` (length capacity + 1). */
  readonly starts: Int32Array;
  /** Total device-readable bytes of each chain (< 2^32 + 1). */
  readonly readableBytes: Float64Array;
  /** Total device-writable bytes of each chain (< 2^32 + 1). */
  readonly writableBytes: Float64Array;
  /**
   * Flat descriptor store, 4 words per descriptor (raw 32-bit patterns, as in the ring): word 0 the
   * low and word 1 the high half of the guest-physical address, word 2 the length (>= 1, read it
   * with `>>> 0`), word 3 the descriptor flags (only {@link DescFlag.WRITE} is meaningful here).
   * Descriptor `j` starts at word `4 * j`. Replaced by a larger array when a pop needs more room.
   */
  descs: Int32Array;

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
    this.descs = new Int32Array(4 * Math.max(16, descriptorCapacity | 0));
  }

  /** Current flat descriptor capacity. */
  get descriptorCapacity(): number {
    return this.descs.length >>> 2;
  }

  /** The id for chain `i`'s used element (0 <= i < count): head index (split) or buffer ID (packed). */
  head(i: number): number {
    return this.heads[i] ?? 0;
  }

  /** Number of (flattened) descriptors of chain `i`. */
  descriptorCount(i: number): number {
    return (this.starts[i + 1] ?? 0) - (this.starts[i] ?? 0);
  }

  /** Guest-physical address of flat descriptor `j`, as a bigint (allocates; not for hot loops). */
  address(j: number): GuestAddress {
    const d = this.descs;
    return ((BigInt((d[4 * j + 1] ?? 0) >>> 0) << 32n) | BigInt((d[4 * j] ?? 0) >>> 0)) as GuestAddress;
  }

  /** Guest-physical address of flat descriptor `j` as a number when it is below 2^53, else -1. */
  addressNumber(j: number): number {
    const hi = (this.descs[4 * j + 1] ?? 0) >>> 0;
    return hi < 0x200000 ? hi * TWO32 + ((this.descs[4 * j] ?? 0) >>> 0) : -1;
  }

  /** Length in bytes of flat descriptor `j` (1..2^32-1). */
  length(j: number): number {
    return (this.descs[4 * j + 2] ?? 0) >>> 0;
  }

  /** True when flat descriptor `j` is device-writable. */
  isWritable(j: number): boolean {
    return ((this.descs[4 * j + 3] ?? 0) & DescFlag.WRITE) !== 0;
  }

  /** @internal Grows the flat descriptor store to at least `needed` descriptors, keeping contents. */
  grow(needed: number): void {
    let n = this.descs.length >>> 2;
    while (n < needed) n *= 2;
    const d = new Int32Array(4 * n);
    d.set(this.descs);
    this.descs = d;
  }
}
