/**
 * Device side of a packed virtqueue (VIRTIO 1.2 §2.8; docs/virtqueue.md#packed-rings): pop
 * available descriptor lists, write used descriptors in batches, event suppression, start/stop at
 * a packed vring base. The same {@link DeviceQueue} shape as {@link SplitQueue}, so device code
 * runs unchanged on either layout.
 *
 * @module
 */
import type { GuestMemory } from "@vhostkit/regions";
import type { PackedVringBase } from "@vhostkit/wire";
import { loadAcquire16, storeRelease16 } from "./barriers.js";
import type { ChainBatch } from "./chain-batch.js";
import { VirtqueueError } from "./errors.js";
import { checkRegionFits } from "./inflight-region.js";
import { MAX_QUEUE_SIZE, type RingAddresses } from "./layout.js";
import { IdState, PackedAvailWalker } from "./packed-avail.js";
import { FRESH_PACKED_VRING_BASE, packedInFlight, packedVringBaseNum, toPackedVringBase } from "./packed-base.js";
import { PackedDescFlag, RingEventFlag, checkPackedRingAlignment, packedLayout, packedNeedEvent } from "./packed-layout.js";
import type { PackedLayout } from "./packed-layout.js";
import { mapRing, u16View } from "./ring-view.js";
import type { RingAddressSpace } from "./ring-view.js";
import { QueueHealth } from "./queue-health.js";
import { SegmentCursor } from "./segment-cursor.js";
import type { DirtyLogger, GuestErrorSink } from "./segment-cursor.js";
import type { DeviceQueue, DeviceQueueOptions } from "./device-queue.js";
import type { SplitQueue } from "./split-queue.js";
import type { PackedInflight } from "./packed-inflight.js";
import { type PackedReplay, recoverPacked } from "./packed-replay.js";

const EMPTY16 = new Uint16Array(0);
const EMPTYI32 = new Int32Array(0);
const USED_BOTH = PackedDescFlag.AVAIL | PackedDescFlag.USED;

/** Options of a {@link PackedQueue}. */
export interface PackedQueueOptions extends DeviceQueueOptions {
  /** Queue size: any integer in 1..32768 (SET_VRING_NUM; packed rings need no power of two). */
  readonly size: number;
  /**
   * SET_VRING_ADDR's three addresses: `desc` the descriptor ring (16-aligned), `avail` the driver
   * event suppression area, `used` the device event suppression area (4-aligned each).
   */
  readonly addresses: RingAddresses;
  /**
   * Inflight I/O tracking (docs/virtqueue.md#packed-inflight-tracking): this queue's region of the
   * inflight area, for at least `size` descriptors; lists are recorded when popped, released when
   * published, and the first {@link PackedQueue.start} resubmits what an earlier process left.
   */
  readonly inflight?: PackedInflight;
}

/**
 * Device side of one packed virtqueue.
 *
 * Lifecycle (docs/protocol.md#vrings): construct from SET_VRING_NUM / SET_VRING_ADDR values,
 * {@link setBase} (SET_VRING_BASE: avail and used offsets with their wrap counters), {@link start}
 * (SET_VRING_KICK: maps the three areas once), process, {@link stop} (GET_VRING_BASE: returns the
 * packed base `num`). After a memory table change call {@link remap}.
 *
 * Hot path, as for {@link SplitQueue}: `pop(batch)` → process → `pushUsed(batch, lens)` or
 * `addUsed(id, len)` → `publishUsed()`. `ChainBatch.heads` hold buffer IDs: the id to hand back.
 * `addUsed` writes the used descriptor's id and len at once, but not its flags; `publishUsed`
 * writes the flags of every queued used descriptor but the first, then the first one's with one
 * release store, so the driver sees the batch at once. No allocation per chain.
 *
 * The device tracks which buffer IDs it holds: the driver reusing one is a guest error, and
 * `addUsed` of an ID not popped is a caller error. Guest errors mark the queue broken: every later
 * call throws `BROKEN` (with the original error as `cause`) until the next {@link start}.
 */
export class PackedQueue implements DeviceQueue, GuestErrorSink {
  /** Queue size (ring descriptors). */
  readonly size: number;
  /** Byte sizes of the ring areas. */
  readonly layout: PackedLayout;
  /** True when VIRTIO_F_EVENT_IDX is in use. */
  readonly eventIdx: boolean;
  /** True when indirect descriptors are accepted. */
  readonly indirect: boolean;

  #memory: GuestMemory;
  readonly #addresses: RingAddresses;
  readonly #space: RingAddressSpace;
  readonly #health: QueueHealth;
  readonly #avail: PackedAvailWalker;
  #desc16: Uint16Array = EMPTY16;
  #desc32: Int32Array = EMPTYI32;
  #driverEvent: Uint16Array = EMPTY16;
  #deviceEvent: Uint16Array = EMPTY16;
  #started = false;
  /** Next used offset and wrap counter (queued used descriptors included). */
  #usedIdx = 0;
  #usedWrap = 1;
  /** Used offset and wrap counter as of the last publish. */
  #pubIdx = 0;
  #pubWrap = 1;
  /** Ring descriptors popped and not yet published as used: the driver cannot have reused them. */
  #held = 0;
  /** Queued (unpublished) used descriptors: ring offset, flags to write, buffer ID. */
  readonly #pendPos: Uint16Array;
  readonly #pendFlags: Uint16Array;
  readonly #pendIds: Uint16Array;
  #pendCount = 0;
  #pendSlots = 0;
  /** {@link addUsed}'s one ID and length, as {@link #putUsed} takes them. */
  readonly #oneId = new Uint16Array(1);
  readonly #oneLen = new Uint32Array(1);
  #signalledValid = false;
  readonly #cursor = new SegmentCursor();
  readonly #inflight: PackedInflight | undefined;
  /** The inflight region was read (first start): later starts resume where the queue stopped. */
  #recovered = false;
  /** Lists recovered from the inflight region, popped before the ring's. */
  #replay: PackedReplay | undefined;

  /**
   * Starts from the fresh base ({@link FRESH_PACKED_VRING_BASE}: offsets 0, wrap counters 1).
   * @throws VirtqueueError `BAD_QUEUE_SIZE`, `MISALIGNED_RING`; RangeError on a bad `maxIndirectLength`.
   */
  constructor(options: PackedQueueOptions) {
    this.layout = packedLayout(options.size);
    this.size = options.size;
    checkPackedRingAlignment(options.addresses);
    this.#memory = options.memory;
    this.#addresses = options.addresses;
    this.#space = options.addressSpace ?? "guest";
    this.eventIdx = options.eventIdx ?? false;
    this.indirect = options.indirect ?? false;
    const mi = options.maxIndirectLength ?? MAX_QUEUE_SIZE;
    if (!Number.isInteger(mi) || mi < 1) throw new RangeError(`maxIndirectLength ${mi} must be a positive integer`);
    this.#health = new QueueHealth(options.onBroken);
    const size = options.size;
    this.#avail = new PackedAvailWalker(
      { size, indirect: this.indirect, requireReadableFirst: options.requireReadableFirst ?? true, maxIndirectLength: mi },
      options.memory,
      this,
    );
    this.#pendPos = new Uint16Array(size);
    this.#pendFlags = new Uint16Array(size);
    this.#pendIds = new Uint16Array(size);
    this.#inflight = options.inflight;
    checkRegionFits(this.#inflight?.descNum, size);
    this.setBase(FRESH_PACKED_VRING_BASE);
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

  /** Where the device is: next avail offset and wrap counter, next used offset and wrap counter (queued used descriptors included). */
  get ringBase(): PackedVringBase {
    return { availIdx: this.#avail.availIdx, availWrap: this.#avail.availWrap === 1, usedIdx: this.#usedIdx, usedWrap: this.#usedWrap === 1 };
  }

  /** {@link ringBase} as the vhost-user `num` (u32) GET_VRING_BASE returns. */
  get base(): number {
    return packedVringBaseNum(this.ringBase);
  }

  /**
   * Sets where the device resumes (SET_VRING_BASE): a `num` (u32) or a decoded base. Only while
   * stopped. A base other than the current position forgets the buffer IDs in flight (their
   * descriptors, between the used and the avail position, stay the device's: the driver cannot
   * reuse them, and the device can no longer return them).
   * @throws RangeError if the base is malformed for this queue size or the queue is started.
   */
  setBase(base: number | PackedVringBase): void {
    if (this.#started) throw new RangeError("SET_VRING_BASE while the queue is started");
    const b = toPackedVringBase(base, this.size);
    const a = this.#avail;
    const cur = this.ringBase;
    if (b.availIdx === cur.availIdx && b.availWrap === cur.availWrap && b.usedIdx === cur.usedIdx && b.usedWrap === cur.usedWrap) return;
    a.availIdx = b.availIdx;
    a.availWrap = b.availWrap ? 1 : 0;
    a.idState.fill(IdState.FREE);
    this.#usedIdx = this.#pubIdx = b.usedIdx;
    this.#usedWrap = this.#pubWrap = b.usedWrap ? 1 : 0;
    this.#held = packedInFlight(b, this.size);
    this.#pendCount = 0;
    this.#pendSlots = 0;
  }

  /**
   * Maps the three areas (one host view each, for the life of the mapping) and starts processing,
   * at `base` when given (see {@link setBase}). Clears a previous broken state.
   * @throws VirtqueueError `RING_UNMAPPED`, `MISALIGNED_RING`; RangeError for a bad base.
   */
  start(base?: number | PackedVringBase): void {
    if (base !== undefined) {
      this.#started = false;
      this.setBase(base);
    }
    this.#map();
    this.#signalledValid = false;
    this.#health.brokenBy = undefined;
    this.#started = true;
    if (this.#inflight === undefined || this.#recovered) return;
    // First start with an inflight region: resume where it says, its lists popped first (a bad region breaks the queue).
    this.#recovered = true;
    const r = recoverPacked(this.#inflight, this.#desc16, this.size, this.ringBase, this);
    if (r === undefined) return;
    this.#started = false;
    this.setBase(r.base);
    this.#started = true;
    this.#replay = r.replay;
  }

  /**
   * Stops the queue (GET_VRING_BASE) and returns the packed base `num`. Queued used descriptors
   * are published first (without a notification decision); on a broken queue they are dropped
   * instead and their IDs count as in flight again. Idempotent.
   */
  stop(): number {
    if (this.#started && this.#pendCount > 0) {
      if (this.#health.brokenBy === undefined) this.#flushUsed();
      else this.#dropQueued();
    }
    this.#started = false;
    this.#desc16 = EMPTY16;
    this.#desc32 = EMPTYI32;
    this.#driverEvent = EMPTY16;
    this.#deviceEvent = EMPTY16;
    this.#avail.desc16 = EMPTY16;
    this.#avail.desc32 = EMPTYI32;
    return this.base;
  }

  /**
   * Replaces the guest memory (after SET_MEM_TABLE / ADD_MEM_REG / REM_MEM_REG) and, when started,
   * maps the areas again. Views obtained from earlier segments become stale.
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
    const { desc, avail, used } = this.#addresses;
    const m = this.#memory;
    const s = this.#space;
    const d = mapRing(m, s, "descriptor", desc, this.layout.descBytes, 4, true);
    const drv = mapRing(m, s, "driver event suppression", avail, this.layout.driverEventBytes, 2, false);
    const dev = mapRing(m, s, "device event suppression", used, this.layout.deviceEventBytes, 2, true);
    this.#desc16 = u16View(d);
    this.#desc32 = new Int32Array(d.buffer, d.byteOffset, d.byteLength >>> 2);
    this.#driverEvent = u16View(drv);
    this.#deviceEvent = u16View(dev);
    this.#avail.desc16 = this.#desc16;
    this.#avail.desc32 = this.#desc32;
    this.#avail.memory = m;
  }

  /** Dirty page logging of what {@link writeChain} writes into this queue's chains (`undefined`: off). */
  dirtyLog: DirtyLogger | undefined = undefined;

  /** @internal Records a guest error (marks the queue broken) and returns it for throwing. */
  guestError(err: VirtqueueError): VirtqueueError {
    return this.#health.latch(err);
  }

  /**
   * True when the descriptor at the avail position carries this lap's AVAIL bit: a list may be
   * available ({@link pop} validates it). One acquire load.
   * @throws VirtqueueError `NOT_STARTED`, `BROKEN`.
   */
  hasAvailable(): boolean {
    if (!this.#started || this.#health.brokenBy !== undefined) throw this.#health.unusable();
    return this.#replay !== undefined || this.#avail.headMarked();
  }

  /**
   * Pops up to `max` (default: the batch capacity) available descriptor lists into `batch`,
   * validating each (bounded by the descriptors the driver may hold; indirect tables by their
   * length) and copying its descriptors into the batch; `batch.head(i)` is the list's buffer ID.
   * Returns the number of lists popped (0 when none is available).
   *
   * @throws VirtqueueError `NOT_STARTED`, `BROKEN`; guest errors `BAD_WRAP`, `AVAIL_OVERRUN`,
   *   `CHAIN_TOO_LONG`, `ZERO_LENGTH`, `ADDRESS_WRAP`, `BAD_ORDER`, `INDIRECT_NOT_NEGOTIATED`,
   *   `INDIRECT_WITH_NEXT`, `BAD_INDIRECT_LENGTH`, `INDIRECT_UNMAPPED`, `BAD_BUFFER_ID`,
   *   `BUFFER_ID_IN_FLIGHT` (the queue is then broken and the batch is left empty).
   */
  pop(batch: ChainBatch, max: number = batch.capacity): number {
    if (!this.#started || this.#health.brokenBy !== undefined) throw this.#health.unusable();
    const a = this.#avail;
    const replay = this.#replay;
    if (replay !== undefined) {
      const n = replay.pop(a, batch, max);
      if (replay.finished) this.#replay = undefined;
      return n;
    }
    const pos = a.availIdx;
    const n = a.pop(batch, max, this.size - this.#held);
    this.#held += a.slots;
    if (this.#inflight !== undefined) {
      try {
        this.#inflight.recordPopped(batch.heads, n, a.idCount, this.#desc32, pos, this.size);
      } catch (e) {
        throw e instanceof VirtqueueError ? this.guestError(e) : e;
      }
    }
    return n;
  }

  /**
   * Positions a cursor (default: one owned by the queue, reused by every call) on chain `chain` of
   * `batch`. Use a cursor of your own when iterating two chains at once or across `await`.
   */
  segments(batch: ChainBatch, chain: number, cursor: SegmentCursor = this.#cursor): SegmentCursor {
    return cursor.reset(batch, chain, this.#memory, this);
  }

  #checkId(id: number): void {
    if (!(Number.isInteger(id) && id >= 0 && id < this.size) || this.#avail.idState[id] !== IdState.POPPED) {
      throw new VirtqueueError("BAD_USED_ID", `used id ${id} is not a buffer the device holds`, { actual: id, expected: this.size });
    }
  }

  /**
   * Queues a used descriptor for buffer `id` with `len` bytes written (u32): its id and len are
   * written now, its flags (which hand it to the driver) by {@link publishUsed}. The used position
   * advances by the ring descriptors the buffer's list took.
   * @throws VirtqueueError `NOT_STARTED`, `BROKEN`, `BAD_USED_ID` (id not popped, or already used).
   */
  addUsed(id: number, len: number): void {
    if (!this.#started || this.#health.brokenBy !== undefined) throw this.#health.unusable();
    this.#checkId(id);
    this.#avail.idState[id] = IdState.USED;
    this.#oneId[0] = id;
    this.#oneLen[0] = len >>> 0;
    this.#putUsed(this.#oneId, 1, this.#oneLen);
  }

  /**
   * Queues one used descriptor per chain of `batch` (id = the chain's buffer ID), with `lens[i]`
   * bytes written (default 0). All or nothing.
   * @throws VirtqueueError `NOT_STARTED`, `BROKEN`, `BAD_USED_ID` (an ID not held, or twice in the batch).
   */
  pushUsed(batch: ChainBatch, lens?: ArrayLike<number>): void {
    if (!this.#started || this.#health.brokenBy !== undefined) throw this.#health.unusable();
    const n = batch.count;
    const heads = batch.heads;
    const state = this.#avail.idState;
    const size = this.size;
    let i = 0;
    try {
      for (; i < n; i++) {
        const id = heads[i] as number;
        if (id >= size || state[id] !== IdState.POPPED) this.#checkId(id); // throws BAD_USED_ID
        state[id] = IdState.USED; // marks duplicates within the batch
      }
    } finally {
      if (i < n) for (let j = 0; j < i; j++) state[heads[j] as number] = IdState.POPPED;
    }
    this.#putUsed(heads, n, lens);
  }

  /**
   * Queues used descriptors for buffers `ids[0..n)` (already marked USED) with `lens` bytes written
   * (default 0): id and len written now, flags by {@link #flushUsed}; the used position advances by
   * the ring descriptors each list took. One pass over locals, no allocation.
   */
  #putUsed(ids: Uint16Array, n: number, lens: ArrayLike<number> | undefined): void {
    const d32 = this.#desc32;
    const d16 = this.#desc16;
    const pendPos = this.#pendPos;
    const pendFlags = this.#pendFlags;
    const pendIds = this.#pendIds;
    const idCount = this.#avail.idCount;
    const inflight = this.#inflight;
    const size = this.size;
    let pos = this.#usedIdx;
    let wrap = this.#usedWrap;
    let c = this.#pendCount;
    let slots = this.#pendSlots;
    for (let k = 0; k < n; k++, c++) {
      const id = ids[k] as number;
      const len = lens === undefined ? 0 : (lens[k] as number) >>> 0;
      d32[4 * pos + 2] = len;
      d16[8 * pos + 6] = id;
      pendPos[c] = pos;
      pendFlags[c] = (wrap === 1 ? USED_BOTH : 0) | (len !== 0 ? PackedDescFlag.WRITE : 0);
      pendIds[c] = id;
      if (inflight !== undefined) inflight.used(id);
      const count = idCount[id] as number;
      slots += count;
      pos += count;
      if (pos >= size) {
        pos -= size;
        wrap ^= 1;
      }
    }
    this.#usedIdx = pos;
    this.#usedWrap = wrap;
    this.#pendCount = c;
    this.#pendSlots = slots;
  }

  /** Writes the queued used descriptors' flags, the first one last; returns the ring descriptors handed back. */
  #flushUsed(): number {
    const n = this.#pendCount;
    const d16 = this.#desc16;
    const pos = this.#pendPos;
    const flags = this.#pendFlags;
    this.#inflight?.beforePublish(this.#usedIdx, this.#usedWrap);
    for (let i = n - 1; i > 0; i--) d16[8 * (pos[i] as number) + 7] = flags[i] as number;
    // Ordering: release (seq-cst) — the ids, lens and later flags are visible before the first
    // used descriptor's flags, which publish the batch; the event suppression loads that follow
    // cannot be satisfied before this store (barriers.ts).
    storeRelease16(d16, 8 * (pos[0] as number) + 7, flags[0] as number);
    this.#inflight?.afterPublish();
    const state = this.#avail.idState;
    const ids = this.#pendIds;
    for (let i = 0; i < n; i++) state[ids[i] as number] = IdState.FREE;
    const slots = this.#pendSlots;
    this.#held -= slots;
    this.#pubIdx = this.#usedIdx;
    this.#pubWrap = this.#usedWrap;
    this.#pendCount = 0;
    this.#pendSlots = 0;
    return slots;
  }

  #dropQueued(): void {
    this.#inflight?.dropPending();
    const state = this.#avail.idState;
    for (let i = 0; i < this.#pendCount; i++) state[this.#pendIds[i] as number] = IdState.POPPED;
    this.#usedIdx = this.#pubIdx;
    this.#usedWrap = this.#pubWrap;
    this.#pendCount = 0;
    this.#pendSlots = 0;
  }

  /**
   * Publishes the queued used descriptors and decides whether the driver needs an interrupt, from
   * the driver event suppression structure: DISABLE → no; DESC (with EVENT_IDX) → when the
   * descriptor at its `off_wrap` was just used; otherwise yes. Returns false when nothing was queued.
   * @throws VirtqueueError `NOT_STARTED`, `BROKEN`.
   */
  publishUsed(): boolean {
    if (!this.#started || this.#health.brokenBy !== undefined) throw this.#health.unusable();
    if (this.#pendCount === 0) return false;
    const slots = this.#flushUsed();
    const ev = this.#driverEvent;
    const flags = loadAcquire16(ev, 1) & 3;
    const valid = this.#signalledValid;
    this.#signalledValid = true;
    if (flags === RingEventFlag.DISABLE) return false;
    if (flags !== RingEventFlag.DESC || !this.eventIdx || !valid) return true;
    // The driver writes off_wrap before flags; flags were loaded first, so off_wrap is as new.
    return packedNeedEvent(loadAcquire16(ev, 0), this.#usedWrap === 1, this.size, this.#usedIdx, this.#usedIdx - slots);
  }

  /**
   * Asks the driver to notify again (EVENT_IDX: an event at the avail position; otherwise
   * RING_EVENT_FLAGS_ENABLE), then re-checks the avail position to close the race window of
   * docs/virtqueue.md#notification-suppression. Returns true when a list may be available: pop
   * again before going back to sleep.
   * @throws VirtqueueError `NOT_STARTED`, `BROKEN`.
   */
  enableNotification(): boolean {
    if (!this.#started || this.#health.brokenBy !== undefined) throw this.#health.unusable();
    const ev = this.#deviceEvent;
    const a = this.#avail;
    // Ordering: off_wrap before flags (the driver reads flags, then off_wrap); seq-cst stores, so
    // the re-check's load of the avail descriptor's flags is not satisfied before them (full fence).
    if (this.eventIdx) {
      storeRelease16(ev, 0, a.availIdx | (a.availWrap << 15));
      storeRelease16(ev, 1, RingEventFlag.DESC);
    } else {
      storeRelease16(ev, 1, RingEventFlag.ENABLE);
    }
    return this.#replay !== undefined || a.headMarked();
  }

  /**
   * Asks the driver not to notify (RING_EVENT_FLAGS_DISABLE, with or without EVENT_IDX). A hint
   * only: kicks may still arrive.
   * @throws VirtqueueError `NOT_STARTED`, `BROKEN`.
   */
  disableNotification(): void {
    if (!this.#started || this.#health.brokenBy !== undefined) throw this.#health.unusable();
    storeRelease16(this.#deviceEvent, 1, RingEventFlag.DISABLE);
  }
}
