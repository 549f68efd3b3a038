/**
 * The avail side of a packed device queue: finding the descriptor lists the driver made available,
 * validating them and copying them into a {@link ChainBatch}. Bounded against hostile guests.
 *
 * @module
 */
import type { GuestMemory } from "@vhostkit/regions";
import { loadAcquire16, loadAcquire32 } from "./barriers.js";
import type { ChainBatch } from "./chain-batch.js";
import type { VirtqueueError } from "./errors.js";
import type { VirtqueueErrorCode } from "./errors.js";
import { IndirectTables, appendTableEntry } from "./indirect-table.js";
import { guestFault } from "./queue-health.js";
import type { ChainTotals } from "./indirect-table.js";
import { PackedDescFlag } from "./packed-layout.js";
import type { GuestErrorSink } from "./segment-cursor.js";

const TWO32 = 0x1_0000_0000;
const F_NEXT = PackedDescFlag.NEXT;
const F_WRITE = PackedDescFlag.WRITE;
const F_INDIRECT = PackedDescFlag.INDIRECT;

/** In-flight state of a buffer ID, device side. */
export const IdState = {
  /** Not in the device's hands: the driver may make it available. */
  FREE: 0,
  /** Popped, not used yet. */
  POPPED: 1,
  /** Used (queued by `addUsed`) but not published: still the device's until `publishUsed`. */
  USED: 2,
} as const;

/** Options of a {@link PackedAvailWalker}. @internal */
export interface PackedAvailOptions {
  readonly size: number;
  readonly indirect: boolean;
  readonly requireReadableFirst: boolean;
  readonly maxIndirectLength: number;
}

/**
 * @internal Device-side avail state of a packed ring: the next avail offset and wrap counter, the
 * per-ID in-flight table, and the walk. Owned by `PackedQueue`, which attaches the ring views.
 */
export class PackedAvailWalker {
  /** Next ring offset the device reads (0..size-1). */
  availIdx = 0;
  /** Avail wrap counter (1 at start, flipped at each pass of the ring end). */
  availWrap = 1;
  /** Ring descriptors consumed by the last successful {@link pop}. */
  slots = 0;
  /** {@link IdState} of each buffer ID. */
  readonly idState: Uint8Array;
  /** Ring descriptors each in-flight ID's list occupies (how far its used descriptor advances). */
  readonly idCount: Uint16Array;
  /** Descriptor ring as u16 words (flags of slot i at 8i + 7, id at 8i + 6). */
  desc16: Uint16Array = new Uint16Array(0);
  /** Descriptor ring as int32 words (addr lo, addr hi, len, id | flags << 16). */
  desc32: Int32Array = new Int32Array(0);
  /** Guest memory for indirect tables (the queue's, replaced on remap). */
  memory: GuestMemory;

  readonly #o: PackedAvailOptions;
  readonly #sink: GuestErrorSink;
  readonly #tables = new IndirectTables();
  readonly #totals: ChainTotals = { readable: 0, writable: 0, seenWrite: false };
  /** Chains of the current pop whose IDs are marked, set when it throws (rolled back then). */
  #marked = 0;

  constructor(options: PackedAvailOptions, memory: GuestMemory, sink: GuestErrorSink) {
    this.#o = options;
    this.memory = memory;
    this.#sink = sink;
    this.idState = new Uint8Array(options.size);
    this.idCount = new Uint16Array(options.size);
  }

  #guest(code: VirtqueueErrorCode, message: string, offset: number, expected?: number, actual?: number): VirtqueueError {
    return guestFault(this.#sink, code, message, offset, expected, actual);
  }

  /** {@link #guest} for a throw in list `k` of a pop: the IDs of lists 0..k-1 are to be rolled back. */
  #guestAt(k: number, code: VirtqueueErrorCode, message: string, offset: number, expected?: number, actual?: number): VirtqueueError {
    this.#marked = k;
    return this.#guest(code, message, offset, expected, actual);
  }

  /**
   * True when the descriptor at the avail offset carries this lap's AVAIL bit (a list may be
   * available; {@link pop} validates it). Acquire load of its flags.
   */
  headMarked(): boolean {
    return ((loadAcquire16(this.desc16, 8 * this.availIdx + 7) >>> 7) & 1) === this.availWrap;
  }

  /**
   * Pops up to `max` lists into `batch` (at most its capacity), reading at most `room` ring
   * descriptors (the ones the device does not hold). Returns the number of lists; {@link slots}
   * says how many ring descriptors they used. A pop that throws consumes nothing, leaves an empty
   * batch and no ID marked.
   */
  pop(batch: ChainBatch, max: number, room: number): number {
    batch.count = 0;
    this.slots = 0;
    this.#marked = 0;
    try {
      return this.#pop(batch, max, room);
    } catch (e) {
      for (let i = 0; i < this.#marked; i++) this.idState[batch.heads[i] as number] = IdState.FREE;
      throw e;
    }
  }

  #pop(batch: ChainBatch, max: number, room: number): number {
    const d32 = this.desc32;
    const size = this.#o.size;
    const idState = this.idState;
    const idCount = this.idCount;
    const n = max < batch.capacity ? max : batch.capacity;
    if (!(n > 0)) return 0;
    const heads = batch.heads;
    const starts = batch.starts;
    const rbytesOut = batch.readableBytes;
    const wbytesOut = batch.writableBytes;
    let flat = batch.descs;
    let pos = this.availIdx;
    let wrap = this.availWrap;
    let consumed = 0;
    let p = 0; // word index into batch.descs
    starts[0] = 0;
    let k = 0;
    for (; k < n; k++) {
      // Ordering: acquire — the list's other descriptors and its buffers are read only after the
      // head's flags showed it available (the driver writes the head's flags last; barriers.ts).
      // One load of the head's last word: its flags (high half) and its buffer ID (low half).
      const head = loadAcquire32(d32, 4 * pos + 3);
      const f = head >>> 16;
      if (((f >>> 7) & 1) !== wrap) break; // not made available in this lap: nothing more
      if (f >>> 15 === wrap) throw this.#guestAt(k, "BAD_WRAP", `descriptor ${pos}: AVAIL and USED both ${wrap}, used before the device took it`, pos, wrap, f);
      let count = 1;
      let word = head; // the list's last descriptor's word: the buffer ID is its low half
      let rbytes = 0;
      let wbytes = 0;
      let next = pos + 1;
      let nextWrap = wrap;
      if ((f & (F_NEXT | F_INDIRECT)) === 0) {
        // A list of one direct descriptor (the common case), in a straight line.
        if (consumed >= room) throw this.#overrun(k, pos, pos, room, consumed + 1);
        const w = pos << 2;
        const len = (d32[w + 2] as number) >>> 0;
        const alo = d32[w] as number;
        const ahi = d32[w + 1] as number;
        if (len === 0) throw this.#guestAt(k, "ZERO_LENGTH", `descriptor ${pos} has length 0`, pos);
        if (ahi === -1 && (alo >>> 0) + len > TWO32) throw this.#guestAt(k, "ADDRESS_WRAP", `descriptor ${pos}: addr + ${len} wraps past 2^64`, pos);
        if (p >= flat.length) {
          batch.grow((p >>> 2) + 1);
          flat = batch.descs;
        }
        flat[p] = alo;
        flat[p + 1] = ahi;
        flat[p + 2] = len;
        flat[p + 3] = f & F_WRITE;
        p += 4;
        if ((f & F_WRITE) !== 0) wbytes = len;
        else rbytes = len;
        if (next === size) {
          next = 0;
          nextWrap ^= 1;
        }
      } else {
        // A NEXT-linked list or one INDIRECT descriptor: the general walk, bounded by `room`.
        const strict = this.#o.requireReadableFirst;
        let q = pos;
        let qw = wrap;
        let fl = f;
        let seenWrite = false;
        count = 0;
        for (;;) {
          if (consumed + ++count > room) {
            if (count > size) throw this.#guestAt(k, "CHAIN_TOO_LONG", `list at descriptor ${pos} longer than queue size ${size}`, pos, size, count);
            throw this.#overrun(k, pos, q, room, consumed + count);
          }
          const w = q << 2;
          if (count > 1) {
            word = d32[w + 3] as number;
            fl = word >>> 16;
            if (((fl >>> 7) & 1) !== qw || fl >>> 15 === qw)
              throw this.#guestAt(k, "BAD_WRAP", `descriptor ${q} in the list at ${pos}: flags 0x${fl.toString(16)} not available in lap ${qw}`, q, qw, fl);
          }
          if ((fl & F_INDIRECT) !== 0) {
            if (!this.#o.indirect) throw this.#guestAt(k, "INDIRECT_NOT_NEGOTIATED", `descriptor ${q} is INDIRECT but VIRTIO_F_INDIRECT_DESC is off`, q);
            if ((fl & F_NEXT) !== 0 || count > 1) throw this.#guestAt(k, "INDIRECT_WITH_NEXT", `descriptor ${q}: INDIRECT in a NEXT-linked list`, q);
            this.#marked = k; // the table's checks throw through the sink
            p = this.#walkIndirect(batch, q, p);
            flat = batch.descs;
            rbytes = this.#totals.readable;
            wbytes = this.#totals.writable;
            break;
          }
          const len = (d32[w + 2] as number) >>> 0;
          const alo = d32[w] as number;
          const ahi = d32[w + 1] as number;
          if (len === 0) throw this.#guestAt(k, "ZERO_LENGTH", `descriptor ${q} has length 0`, q);
          if (ahi === -1 && (alo >>> 0) + len > TWO32) throw this.#guestAt(k, "ADDRESS_WRAP", `descriptor ${q}: addr + ${len} wraps past 2^64`, q);
          if (p >= flat.length) {
            batch.grow((p >>> 2) + 1);
            flat = batch.descs;
          }
          flat[p] = alo;
          flat[p + 1] = ahi;
          flat[p + 2] = len;
          flat[p + 3] = fl & F_WRITE;
          p += 4;
          if ((fl & F_WRITE) !== 0) {
            wbytes += len;
            seenWrite = true;
          } else {
            if (seenWrite && strict) throw this.#guestAt(k, "BAD_ORDER", `descriptor ${q}: device-readable after device-writable in the list at ${pos}`, q);
            rbytes += len;
          }
          if ((fl & F_NEXT) === 0) break; // the buffer ID is the last descriptor's
          if (++q === size) {
            q = 0;
            qw ^= 1;
          }
        }
        if (rbytes + wbytes > TWO32)
          throw this.#guestAt(k, "CHAIN_TOO_LONG", `list at descriptor ${pos} holds ${rbytes + wbytes} bytes (> 2^32)`, pos, TWO32, rbytes + wbytes);
        next = q + 1;
        nextWrap = qw;
        if (next === size) {
          next = 0;
          nextWrap ^= 1;
        }
      }
      const id = word & 0xffff;
      if (id >= size) throw this.#guestAt(k, "BAD_BUFFER_ID", `list at descriptor ${pos}: buffer id ${id} >= queue size ${size}`, pos, size, id);
      if (idState[id] !== IdState.FREE)
        throw this.#guestAt(k, "BUFFER_ID_IN_FLIGHT", `list at descriptor ${pos}: buffer id ${id} is still in flight`, pos, undefined, id);
      idState[id] = IdState.POPPED;
      idCount[id] = count;
      heads[k] = id; // marked: a throw from here on rolls back heads[0..k] (#guestAt)
      rbytesOut[k] = rbytes;
      wbytesOut[k] = wbytes;
      starts[k + 1] = p >>> 2;
      consumed += count;
      pos = next;
      wrap = nextWrap;
    }
    batch.count = k;
    this.availIdx = pos;
    this.availWrap = wrap;
    this.slots = consumed;
    return k;
  }

  #overrun(k: number, pos: number, q: number, room: number, needed: number): VirtqueueError {
    return this.#guestAt(k, "AVAIL_OVERRUN", `list at descriptor ${pos} reaches descriptor ${q}, which the device still holds (${room} free)`, q, room, needed);
  }

  /**
   * Flattens the indirect table of ring descriptor `q` into the batch from word `p`; returns the
   * new `p` and leaves the byte totals in `#totals`. The table's entries are used in order, all of
   * them: only WRITE is meaningful there (NEXT, INDIRECT and the ID are reserved and ignored,
   * VIRTIO 1.2 §2.8 "Indirect Flag").
   */
  #walkIndirect(batch: ChainBatch, q: number, p: number): number {
    const table = this.#tables.open(this.desc32, q, this.#o.maxIndirectLength, this.memory, this.#sink);
    const n = table.byteLength / 16;
    const strict = this.#o.requireReadableFirst;
    const totals = this.#totals;
    totals.readable = 0;
    totals.writable = 0;
    totals.seenWrite = false;
    if (p + 4 * n > batch.descs.length) batch.grow((p >>> 2) + n);
    for (let i = 0; i < n; i++) p = appendTableEntry(table, i, (table.getUint16(i * 16 + 14, true) & F_WRITE) !== 0, q, batch, p, totals, strict, this.#sink);
    return p;
  }
}
