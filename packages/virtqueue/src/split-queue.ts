/**
 * Device side of a split virtqueue (docs/virtqueue.md): pop available chains, push used elements,
 * notification decisions, start/stop at a given avail index. Bounded against hostile guests.
 *
 * @module
 */
import type { GuestMemory } from "@vhostkit/regions";
import { loadAcquire16, storeRelease16 } from "./barriers.js";
import type { ChainBatch } from "./chain-batch.js";
import { VirtqueueError, type VirtqueueErrorCode } from "./errors.js";
import { checkRegionFits } from "./inflight-region.js";
import { AVAIL_F_NO_INTERRUPT, DescFlag, USED_F_NO_NOTIFY, checkRingAlignment, needEvent, splitLayout } from "./layout.js";
import type { RingAddresses, SplitLayout } from "./layout.js";
import type { RingAddressSpace } from "./ring-view.js";
import { IndirectTables, appendTableEntry } from "./indirect-table.js";
import type { ChainTotals } from "./indirect-table.js";
import type { DeviceQueue } from "./device-queue.js";
import { QueueHealth, guestFault } from "./queue-health.js";
import { SegmentCursor } from "./segment-cursor.js";
import type { DirtyLogger, GuestErrorSink } from "./segment-cursor.js";
import type { SplitInflight } from "./split-inflight.js";
import { maxIndirectLength, type SplitQueueOptions } from "./split-queue-options.js";
import { mapSplitRing, type SplitRingViews, UNMAPPED_SPLIT_RING } from "./split-ring-views.js";

const TWO32 = 0x1_0000_0000;
const F_NEXT = DescFlag.NEXT;
const F_WRITE = DescFlag.WRITE;
const F_INDIRECT = DescFlag.INDIRECT;

/**
 * Device side of one split virtqueue.
 *
 * Lifecycle (docs/protocol.md#starting-and-stopping-rings): construct from SET_VRING_NUM / SET_VRING_ADDR values, {@link setBase}
 * (SET_VRING_BASE), {@link start} (SET_VRING_KICK: maps the rings once and reads `used.idx` from
 * memory), process, {@link stop} (GET_VRING_BASE: returns the next avail index). After a memory
 * table change call {@link remap}.
 *
 * Hot path: `pop(batch)` → process → `pushUsed(batch, lens)` or `addUsed(...)` → `publishUsed()`.
 * One acquire load per pop and one release store per publish; no allocation per chain.
 *
 * Guest errors (codes marked *guest* in {@link VirtqueueErrorCode}) mark the queue broken: every
 * later call throws `BROKEN` (with the original error as `cause`) until the next {@link start}.
 */
export class SplitQueue implements DeviceQueue, GuestErrorSink {
  /** Queue size (descriptors). */
  readonly size: number;
  /** Byte sizes of the ring parts. */
  readonly layout: SplitLayout;
  /** True when VIRTIO_F_EVENT_IDX is in use. */
  readonly eventIdx: boolean;
  /** True when indirect descriptors are accepted. */
  readonly indirect: boolean;

  #memory: GuestMemory;
  readonly #addresses: RingAddresses;
  readonly #space: RingAddressSpace;
  readonly #strictOrder: boolean;
  readonly #maxIndirect: number;
  readonly #health: QueueHealth;
  readonly #inflight: SplitInflight | undefined;
  /** Heads recovered from the inflight region, handed out by `pop` before new avail entries. */
  #resubmit: readonly number[] = [];
  #resubmitted = 0;
  /** The inflight region was read (first start): later starts resume where the queue stopped. */
  #recovered = false;
  #desc32: Int32Array = UNMAPPED_SPLIT_RING.desc32;
  #avail16: Uint16Array = UNMAPPED_SPLIT_RING.avail16;
  #used16: Uint16Array = UNMAPPED_SPLIT_RING.used16;
  #used32: Uint32Array = UNMAPPED_SPLIT_RING.used32;
  #started = false;
  #nextAvail = 0;
  #nextUsed = 0;
  #publishedUsed = 0;
  #signalledUsed = 0;
  #signalledValid = false;
  readonly #cursor = new SegmentCursor();
  readonly #tables = new IndirectTables();
  // Indirect-walk accumulators (slow path only).
  readonly #totals: ChainTotals = { readable: 0, writable: 0, seenWrite: false };

  /**
   * @throws VirtqueueError `BAD_QUEUE_SIZE`, `MISALIGNED_RING`.
   */
  constructor(options: SplitQueueOptions) {
    this.layout = splitLayout(options.size);
    this.size = options.size;
    checkRingAlignment(options.addresses);
    this.#memory = options.memory;
    this.#addresses = options.addresses;
    this.#space = options.addressSpace ?? "guest";
    this.eventIdx = options.eventIdx ?? false;
    this.indirect = options.indirect ?? false;
    this.#strictOrder = options.requireReadableFirst ?? true;
    this.#maxIndirect = maxIndirectLength(options);
    this.#health = new QueueHealth(options.onBroken);
    this.#inflight = options.inflight;
    checkRegionFits(this.#inflight?.descNum, this.size);
  }

  /** The guest memory in use (what {@link readChain} / {@link writeChain} should be given). */
  get memory(): GuestMemory {
    return this.#memory;
  }

  /** True between {@link start} and {@link stop}. */
  get started(): boolean {
    return this.#started;
  }

  /** The guest error that broke the queue, or undefined. The back-end should signal the err fd. */
  get brokenBy(): VirtqueueError | undefined {
    return this.#health.brokenBy;
  }

  /** Next avail index the device will read (the value GET_VRING_BASE returns). u16. */
  get base(): number {
    return this.#nextAvail;
  }

  /** Index the next used element goes to (not yet published ones included). u16. */
  get usedIndex(): number {
    return this.#nextUsed;
  }

  /**
   * Sets the next avail index (SET_VRING_BASE; split rings carry only this index). Only while
   * stopped.
   * @throws RangeError if `base` is not a u16 or the queue is started.
   */
  setBase(base: number): void {
    if (this.#started) throw new RangeError("SET_VRING_BASE while the queue is started");
    if (!Number.isInteger(base) || base < 0 || base > 0xffff) throw new RangeError(`vring base ${base} is not a u16`);
    this.#nextAvail = base;
  }

  /**
   * Maps the rings (one host view each, for the life of the mapping), reads `used.idx` from memory
   * (docs/protocol.md#starting-and-stopping-rings) and starts processing at avail index `base` (default: the current base).
   * Clears a previous broken state.
   * @throws VirtqueueError `RING_UNMAPPED`, `MISALIGNED_RING`.
   */
  start(base?: number): void {
    if (base !== undefined) {
      this.#started = false;
      this.setBase(base);
    }
    this.#map();
    const used = loadAcquire16(this.#used16, 1);
    this.#nextUsed = used;
    this.#publishedUsed = used;
    this.#signalledValid = false;
    this.#health.brokenBy = undefined;
    if (this.#inflight !== undefined && !this.#recovered) {
      const r = this.#inflight.recover(used, this.size, this.#nextAvail);
      this.#nextAvail = r.nextAvail;
      this.#resubmit = r.resubmit;
      this.#resubmitted = 0;
      this.#recovered = true;
    }
    this.#started = true;
  }

  /**
   * Stops the queue (GET_VRING_BASE) and returns the next avail index. Used elements still queued
   * are published first (without a notification decision). Idempotent.
   */
  stop(): number {
    if (this.#started && this.#nextUsed !== this.#publishedUsed && this.#health.brokenBy === undefined) {
      storeRelease16(this.#used16, 1, this.#nextUsed);
      this.#publishedUsed = this.#nextUsed;
      this.#inflight?.afterPublish(this.#nextUsed);
    }
    this.#started = false;
    this.#setViews(UNMAPPED_SPLIT_RING);
    return this.#nextAvail;
  }

  /**
   * Replaces the guest memory (after SET_MEM_TABLE / ADD_MEM_REG / REM_MEM_REG) and, when started,
   * maps the rings again. Views obtained from earlier segments become stale.
   * @throws VirtqueueError `RING_UNMAPPED`, `MISALIGNED_RING` (the queue is then stopped).
   */
  remap(memory: GuestMemory = this.#memory): void {
    this.#memory = memory;
    if (!this.#started) return;
    try {
      this.#map();
    } catch (e) {
      this.#started = false;
      throw e;
    }
  }

  #map(): void {
    this.#setViews(mapSplitRing(this.#memory, this.#space, this.#addresses, this.layout));
  }

  #setViews(views: SplitRingViews): void {
    this.#desc32 = views.desc32;
    this.#avail16 = views.avail16;
    this.#used16 = views.used16;
    this.#used32 = views.used32;
  }

  /** Dirty page logging of what {@link writeChain} writes into this queue's chains (`undefined`: off). */
  dirtyLog: DirtyLogger | undefined = undefined;

  /** @internal Records a guest error (marks the queue broken) and returns it for throwing. */
  guestError(err: VirtqueueError): VirtqueueError {
    return this.#health.latch(err);
  }

  #guest(code: VirtqueueErrorCode, message: string, offset: number, expected?: number, actual?: number): VirtqueueError {
    return guestFault(this, code, message, offset, expected, actual);
  }

  /**
   * Number of chains the driver has made available and the device has not popped yet.
   * @throws VirtqueueError `NOT_STARTED`, `BROKEN`, `AVAIL_OVERRUN` (guest).
   */
  available(): number {
    if (!this.#started || this.#health.brokenBy !== undefined) throw this.#health.unusable();
    const pending = (loadAcquire16(this.#avail16, 1) - this.#nextAvail) & 0xffff;
    if (pending > this.size) throw this.#overrun(pending);
    return pending + this.#resubmit.length - this.#resubmitted;
  }

  /**
   * True when chains are available ({@link available} is not 0): the device's polling check.
   * @throws VirtqueueError `NOT_STARTED`, `BROKEN`, `AVAIL_OVERRUN` (guest).
   */
  hasAvailable(): boolean {
    return this.available() !== 0;
  }

  #overrun(pending: number): VirtqueueError {
    return this.#guest("AVAIL_OVERRUN", `avail.idx moved ${pending} entries past ${this.#nextAvail}, queue size ${this.size}`, 2, this.size, pending);
  }

  /**
   * Pops up to `max` (default: the batch capacity) available chains into `batch`, walking and
   * validating each chain (bounded by the queue size; indirect tables by their length) and copying
   * its descriptors into the batch. Returns the number of chains popped (0 when none is available).
   * With inflight tracking, chains recovered from the inflight region come first (in batches of
   * their own), and every chain popped from the available ring is marked in the region before this
   * returns.
   *
   * @throws VirtqueueError `NOT_STARTED`, `BROKEN`; guest errors `AVAIL_OVERRUN`, `BAD_HEAD`,
   *   `BAD_NEXT`, `CHAIN_TOO_LONG`, `ZERO_LENGTH`, `ADDRESS_WRAP`, `BAD_ORDER`,
   *   `INDIRECT_NOT_NEGOTIATED`, `INDIRECT_WITH_NEXT`, `NESTED_INDIRECT`, `BAD_INDIRECT_LENGTH`,
   *   `INDIRECT_UNMAPPED` (the queue is then broken and the batch is left empty).
   */
  pop(batch: ChainBatch, max: number = batch.capacity): number {
    if (!this.#started || this.#health.brokenBy !== undefined) throw this.#health.unusable();
    const avail16 = this.#avail16;
    // Descriptors are read as four int32 words (addr lo, addr hi, len, flags | next << 16): int32
    // loads stay on the JIT's integer fast path; `>>> 0` makes them unsigned where it matters.
    const desc = this.#desc32;
    const size = this.size;
    const mask = size - 1;
    const next = this.#nextAvail;
    // Ordering: acquire — ring slots and descriptors are read only after avail.idx (barriers.ts).
    batch.count = 0; // a pop that throws leaves an empty batch, never stale chains
    const resubmit = this.#resubmit;
    const resubmitting = this.#resubmitted < resubmit.length;
    const pending = resubmitting ? resubmit.length - this.#resubmitted : (loadAcquire16(avail16, 1) - next) & 0xffff;
    if (pending > size) throw this.#overrun(pending);
    let n = pending < max ? pending : max;
    if (n > batch.capacity) n = batch.capacity;
    if (n <= 0) return 0;
    const heads = batch.heads;
    const starts = batch.starts;
    const rb = batch.readableBytes;
    const wb = batch.writableBytes;
    let flat = batch.descs;
    let cap = flat.length;
    const strict = this.#strictOrder;
    let p = 0; // word index into flat (4 words per descriptor)
    starts[0] = 0;
    for (let k = 0; k < n; k++) {
      const head = (resubmitting ? resubmit[this.#resubmitted + k] : avail16[2 + ((next + k) & mask)]) as number;
      if (head >= size) throw this.#guest("BAD_HEAD", `avail ring slot ${(next + k) & mask}: head ${head} >= queue size ${size}`, head, size, head);
      heads[k] = head;
      let d = head;
      let count = 0;
      let rbytes = 0;
      let wbytes = 0;
      let seenWrite = false;
      for (;;) {
        if (++count > size) throw this.#guest("CHAIN_TOO_LONG", `chain at head ${head} longer than queue size ${size} (loop)`, d, size);
        const w = d << 2;
        const w3 = desc[w + 3] as number;
        if ((w3 & F_INDIRECT) !== 0) {
          const t = this.#totals;
          t.readable = rbytes;
          t.writable = wbytes;
          t.seenWrite = seenWrite;
          p = this.#walkIndirect(batch, d, w3 & 0xffff, p);
          rbytes = t.readable;
          wbytes = t.writable;
          flat = batch.descs;
          cap = flat.length;
          break;
        }
        const len = (desc[w + 2] as number) >>> 0;
        const alo = desc[w] as number;
        const ahi = desc[w + 1] as number;
        if (len === 0) throw this.#guest("ZERO_LENGTH", `descriptor ${d} has length 0`, d);
        if (ahi === -1 && (alo >>> 0) + len > TWO32) throw this.#guest("ADDRESS_WRAP", `descriptor ${d}: addr + ${len} wraps past 2^64`, d);
        if (p >= cap) {
          batch.grow((p >>> 2) + 1);
          flat = batch.descs;
          cap = flat.length;
        }
        flat[p] = alo;
        flat[p + 1] = ahi;
        flat[p + 2] = len;
        flat[p + 3] = w3 & 0xffff;
        p += 4;
        if ((w3 & F_WRITE) !== 0) {
          wbytes += len;
          seenWrite = true;
        } else {
          if (seenWrite && strict) throw this.#guest("BAD_ORDER", `descriptor ${d}: device-readable after device-writable in chain ${head}`, d);
          rbytes += len;
        }
        if ((w3 & F_NEXT) === 0) break;
        d = w3 >>> 16;
        if (d >= size) throw this.#guest("BAD_NEXT", `chain ${head}: next ${d} >= queue size ${size}`, d, size, d);
      }
      if (rbytes + wbytes > TWO32) throw this.#guest("CHAIN_TOO_LONG", `chain ${head} holds ${rbytes + wbytes} bytes (> 2^32)`, head, TWO32, rbytes + wbytes);
      rb[k] = rbytes;
      wb[k] = wbytes;
      starts[k + 1] = p >>> 2;
    }
    batch.count = n;
    if (resubmitting) {
      // Already marked in the region by the process that took them first (their counters stay).
      this.#resubmitted += n;
      return n;
    }
    this.#nextAvail = (next + n) & 0xffff;
    const inflight = this.#inflight;
    if (inflight !== undefined) for (let k = 0; k < n; k++) inflight.markAvailable(heads[k] as number);
    return n;
  }

  #walkIndirect(batch: ChainBatch, d: number, flags: number, p: number): number {
    if (!this.indirect) throw this.#guest("INDIRECT_NOT_NEGOTIATED", `descriptor ${d} is INDIRECT but VIRTIO_F_INDIRECT_DESC is off`, d);
    if ((flags & F_NEXT) !== 0) throw this.#guest("INDIRECT_WITH_NEXT", `descriptor ${d} has both INDIRECT and NEXT`, d);
    const table = this.#tables.open(this.#desc32, d, this.#maxIndirect, this.#memory, this);
    const n = table.byteLength / 16;
    const strict = this.#strictOrder;
    const totals = this.#totals;
    let i = 0;
    let count = 0;
    for (;;) {
      if (++count > n) throw this.#guest("CHAIN_TOO_LONG", `indirect table of descriptor ${d}: chain longer than ${n} entries (loop)`, d, n);
      const f = table.getUint16(i * 16 + 12, true);
      if ((f & F_INDIRECT) !== 0) throw this.#guest("NESTED_INDIRECT", `indirect table of descriptor ${d}: entry ${i} is INDIRECT`, d);
      p = appendTableEntry(table, i, (f & F_WRITE) !== 0, d, batch, p, totals, strict, this);
      if ((f & F_NEXT) === 0) break;
      i = table.getUint16(i * 16 + 14, true);
      if (i >= n) throw this.#guest("BAD_NEXT", `indirect table of descriptor ${d}: next ${i} >= table size ${n}`, d, n, i);
    }
    return p;
  }

  /**
   * Positions a cursor (default: one owned by the queue, reused by every call) on chain `chain` of
   * `batch`. Use a cursor of your own when iterating two chains at once or across `await`.
   */
  segments(batch: ChainBatch, chain: number, cursor: SegmentCursor = this.#cursor): SegmentCursor {
    return cursor.reset(batch, chain, this.#memory, this);
  }

  /**
   * Queues a used element `{id, len}` (`len` = bytes the device wrote, u32). Invisible to the driver
   * until {@link publishUsed}.
   * @throws VirtqueueError `NOT_STARTED`, `BROKEN`, `BAD_USED_ID` (id not < size), `USED_OVERFLOW`
   *   (already `size` unpublished elements).
   */
  addUsed(id: number, len: number): void {
    if (!this.#started || this.#health.brokenBy !== undefined) throw this.#health.unusable();
    if (!(id >= 0 && id < this.size) || (id | 0) !== id)
      throw new VirtqueueError("BAD_USED_ID", `used id ${id} >= queue size ${this.size}`, { actual: id, expected: this.size });
    const u = this.#nextUsed;
    if (((u - this.#publishedUsed) & 0xffff) >= this.size)
      throw new VirtqueueError("USED_OVERFLOW", `${this.size} used elements already pending`, { expected: this.size });
    const slot = u & (this.size - 1);
    this.#inflight?.beforeUsed(id);
    this.#used32[1 + 2 * slot] = id;
    this.#used32[2 + 2 * slot] = len >>> 0;
    this.#nextUsed = (u + 1) & 0xffff;
  }

  /**
   * Queues one used element per chain of `batch` (id = the chain's head), with `lens[i]` bytes
   * written (default 0). Invisible to the driver until {@link publishUsed}.
   * @throws VirtqueueError `NOT_STARTED`, `BROKEN`, `USED_OVERFLOW`.
   */
  pushUsed(batch: ChainBatch, lens?: ArrayLike<number>): void {
    if (!this.#started || this.#health.brokenBy !== undefined) throw this.#health.unusable();
    const n = batch.count;
    const size = this.size;
    const mask = size - 1;
    let u = this.#nextUsed;
    if (((u - this.#publishedUsed) & 0xffff) + n > size)
      throw new VirtqueueError("USED_OVERFLOW", `${n} more used elements would exceed queue size ${size}`, { expected: size });
    const used32 = this.#used32;
    const heads = batch.heads;
    const inflight = this.#inflight;
    for (let i = 0; i < n; i++) {
      const slot = u & mask;
      inflight?.beforeUsed(heads[i] as number);
      used32[1 + 2 * slot] = heads[i] as number;
      used32[2 + 2 * slot] = lens === undefined ? 0 : (lens[i] as number) >>> 0;
      u = (u + 1) & 0xffff;
    }
    this.#nextUsed = u;
  }

  /**
   * Publishes the queued used elements (one release store of `used.idx`) and decides whether the
   * driver needs an interrupt: with EVENT_IDX `vring_need_event(used_event, new, last signalled)`,
   * otherwise unless the driver set NO_INTERRUPT. Returns false when nothing was queued.
   * @throws VirtqueueError `NOT_STARTED`, `BROKEN`.
   */
  publishUsed(): boolean {
    if (!this.#started || this.#health.brokenBy !== undefined) throw this.#health.unusable();
    const nu = this.#nextUsed;
    if (nu === this.#publishedUsed) return false;
    // Ordering: release (seq-cst) — used elements are visible before used.idx, and the loads of
    // used_event / avail.flags below cannot be satisfied before this store (barriers.ts).
    storeRelease16(this.#used16, 1, nu);
    this.#publishedUsed = nu;
    // SAFETY/ordering: the inflight flags are cleared only after used.idx was stored (a seq-cst
    // store the engines never move later stores above): a process killed in between leaves
    // used_idx behind the used ring, and the next one clears the batch (SplitInflight.recover).
    this.#inflight?.afterPublish(nu);
    if (this.eventIdx) {
      const ev = loadAcquire16(this.#avail16, 2 + this.size);
      const old = this.#signalledUsed;
      const valid = this.#signalledValid;
      this.#signalledUsed = nu;
      this.#signalledValid = true;
      return !valid || needEvent(ev, nu, old);
    }
    return (loadAcquire16(this.#avail16, 0) & AVAIL_F_NO_INTERRUPT) === 0;
  }

  /**
   * Asks the driver to notify again (EVENT_IDX: `avail_event = base`; otherwise clears NO_NOTIFY),
   * then re-reads `avail.idx` to close the race window of docs/virtqueue.md#notification-suppression. Returns true when chains are
   * available: pop again before going back to sleep.
   * @throws VirtqueueError `NOT_STARTED`, `BROKEN`, `AVAIL_OVERRUN` (guest).
   */
  enableNotification(): boolean {
    if (!this.#started || this.#health.brokenBy !== undefined) throw this.#health.unusable();
    // Ordering: full fence (seq-cst store, then seq-cst load of avail.idx in available()).
    if (this.eventIdx) storeRelease16(this.#used16, 2 + 4 * this.size, this.#nextAvail);
    else storeRelease16(this.#used16, 0, (this.#used16[0] as number) & ~USED_F_NO_NOTIFY);
    return this.available() !== 0;
  }

  /**
   * Asks the driver not to notify (sets NO_NOTIFY; with EVENT_IDX nothing is written: the driver
   * keeps comparing against the last `avail_event`). A hint only: kicks may still arrive.
   * @throws VirtqueueError `NOT_STARTED`, `BROKEN`.
   */
  disableNotification(): void {
    if (!this.#started || this.#health.brokenBy !== undefined) throw this.#health.unusable();
    if (!this.eventIdx) storeRelease16(this.#used16, 0, (this.#used16[0] as number) | USED_F_NO_NOTIFY);
  }

  /**
   * Writes `avail_event` (EVENT_IDX): the driver kicks when it publishes the entry at `idx`.
   * @throws VirtqueueError `NOT_STARTED`, `BROKEN`; RangeError unless EVENT_IDX is in use.
   */
  setAvailEvent(idx: number): void {
    if (!this.#started || this.#health.brokenBy !== undefined) throw this.#health.unusable();
    if (!this.eventIdx) throw new RangeError("avail_event is only used with VIRTIO_F_EVENT_IDX");
    storeRelease16(this.#used16, 2 + 4 * this.size, idx & 0xffff);
  }
}
