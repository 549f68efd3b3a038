/**
 * What both driver queues (split and packed) take and give back: their common options, buffers,
 * used buffers, the checks on buffers, and writing an indirect table into guest memory.
 *
 * @module
 */
import type { GuestAddress, GuestMemory } from "@vhostkit/regions";
import { VirtqueueError } from "../errors.js";

/** Options both driver queues take (each adds its `size`, `addresses` and layout options). */
export interface DriverQueueOptions {
  /** Guest memory holding the rings and the buffers (the driver writes descriptors through it). */
  readonly memory: GuestMemory;
  /** VIRTIO_F_EVENT_IDX negotiated. */
  readonly eventIdx?: boolean;
  /** VIRTIO_F_INDIRECT_DESC negotiated (required by `addIndirect`). */
  readonly indirect?: boolean;
}

/** A guest buffer handed to the device: guest-physical address and length in bytes (1..2^32-1). */
export interface DriverBuffer {
  /** Guest-physical address. */
  readonly addr: bigint;
  /** Length in bytes. */
  readonly len: number;
}

/** A buffer the device returned: the chain's id, bytes written, and the caller's token. */
export interface UsedBuffer<T> {
  /** The id `add` / `addIndirect` returned (split ring: the head descriptor index; packed ring: the buffer ID). */
  readonly id: number;
  /** Bytes the device says it wrote (u32; may under-count). */
  readonly len: number;
  /** The token given to `add` / `addIndirect`. */
  readonly token: T | undefined;
}

/**
 * A reusable place for the used buffers of one collection round ({@link SplitDriver.collectUsedInto},
 * {@link PackedDriver.collectUsedInto}): ids, lengths and tokens in parallel arrays, so that collecting
 * completions allocates nothing per buffer or per round. Entries `0 .. count - 1` are valid after a
 * collection; the next collection overwrites them.
 */
export class UsedBatch<T> {
  /** The id of each used buffer (as in {@link UsedBuffer.id}). */
  readonly id: Uint16Array;
  /** Bytes the device says it wrote into each (as in {@link UsedBuffer.len}). */
  readonly len: Uint32Array;
  /**
   * The token of each. {@link UsedBatch.take} and {@link UsedBatch.clear} release them; a round's
   * tokens left untaken stay referenced until released or overwritten by a later round.
   */
  readonly token: (T | undefined)[];
  /** Number of valid entries (set by the collection). */
  count = 0;
  /** The most buffers one collection stores. */
  readonly capacity: number;

  /**
   * @param capacity - the most buffers one collection stores (the queue size holds every round).
   * @throws RangeError when `capacity` is not an integer in 1..32768.
   */
  constructor(capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > 32768) throw new RangeError(`used batch capacity ${capacity} not in 1..32768`);
    this.capacity = capacity;
    this.id = new Uint16Array(capacity);
    this.len = new Uint32Array(capacity);
    this.token = new Array<T | undefined>(capacity).fill(undefined);
  }

  /** The token of entry `i`, which the batch forgets (so it keeps no request alive). */
  take(i: number): T | undefined {
    const t = this.token[i];
    this.token[i] = undefined;
    return t;
  }

  /** Forgets every entry (their tokens too): `count` is 0 again. */
  clear(): void {
    for (let i = 0; i < this.count; i++) this.token[i] = undefined;
    this.count = 0;
  }
}

/**
 * @internal `collectUsed` of both drivers: their `collectUsedInto` (`into`) on a batch of up to
 * `max` (at most the queue `size`), handed back as one object per used buffer.
 */
export function collectAsObjects<T>(size: number, max: number, into: (batch: UsedBatch<T>) => number): UsedBuffer<T>[] {
  const batch = new UsedBatch<T>(Math.max(1, Math.min(max, size)));
  const n = into(batch);
  const out: UsedBuffer<T>[] = [];
  for (let i = 0; i < n; i++) out.push({ id: batch.id[i] as number, len: batch.len[i] as number, token: batch.take(i) });
  return out;
}

/**
 * Checks a chain's buffers: at least one in total, each of length 1..2^32-1 and not wrapping past
 * 2^64. Returns the number of buffers.
 * @throws VirtqueueError `BAD_BUFFER`.
 */
export function checkBuffers(readable: readonly DriverBuffer[], writable: readonly DriverBuffer[]): number {
  const n = readable.length + writable.length;
  if (n === 0) throw new VirtqueueError("BAD_BUFFER", "a chain needs at least one buffer");
  // Indexed loops and no BigInt arithmetic on the common path: this runs for every buffer added.
  for (let i = 0; i < readable.length; i++) checkBuffer("readable", readable[i] as DriverBuffer);
  for (let i = 0; i < writable.length; i++) checkBuffer("writable", writable[i] as DriverBuffer);
  return n;
}

/** The highest address from which every buffer length (up to 2^32 - 1) ends at or below 2^64. */
const SAFE_ADDR_MAX = (1n << 64n) - 0xffff_ffffn;

function checkBuffer(what: string, b: DriverBuffer): void {
  if (!Number.isInteger(b.len) || b.len < 1 || b.len > 0xffffffff)
    throw new VirtqueueError("BAD_BUFFER", `${what} buffer length ${b.len} not in 1..2^32-1`, { actual: b.len });
  if (b.addr >= 0n && b.addr <= SAFE_ADDR_MAX) return;
  if (b.addr < 0n || b.addr + BigInt(b.len) > 1n << 64n)
    throw new VirtqueueError("BAD_BUFFER", `${what} buffer 0x${b.addr.toString(16)} + ${b.len} wraps`, { actual: b.addr });
}

/**
 * Copies an indirect table `src` to guest address `addr` through `memory.translate`, across region
 * boundaries.
 * @throws VirtqueueError `INDIRECT_UNMAPPED` when part of the range is unmapped or read-only.
 */
export function writeIndirectTable(memory: GuestMemory, addr: bigint, src: Uint8Array): void {
  let done = 0;
  while (done < src.length) {
    const a = addr + BigInt(done);
    const r = memory.translate(a as GuestAddress, src.length - done);
    if (!r.ok || !r.span.writable || r.span.bytes.length === 0)
      throw new VirtqueueError("INDIRECT_UNMAPPED", `indirect table 0x${addr.toString(16)} not mapped writable at +${done}`, { actual: a });
    const n = Math.min(r.span.bytes.length, src.length - done);
    r.span.bytes.set(src.subarray(done, done + n));
    done += n;
  }
}
