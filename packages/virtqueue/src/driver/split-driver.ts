/**
 * Driver side of a split virtqueue: what a guest driver (or vhostkit's generic front-end, which
 * drives back-ends without a VM) does — add buffers, decide whether to kick, collect used buffers.
 *
 * @module
 */
import type { GuestMemory } from "@vhostkit/regions";
import { loadAcquire16, storeRelease16 } from "../barriers.js";
import { VirtqueueError } from "../errors.js";
import { AVAIL_F_NO_INTERRUPT, DESC_SIZE, DescFlag, RING_ALIGN, USED_F_NO_NOTIFY, checkRingAlignment, needEvent, splitLayout } from "../layout.js";
import type { RingAddresses, SplitLayout } from "../layout.js";
import { mapRing, u16View, u32View } from "../ring-view.js";
import { checkBuffers, collectAsObjects, type UsedBatch, writeIndirectTable } from "./driver-buffer.js";
import type { DriverBuffer, DriverQueueOptions, UsedBuffer } from "./driver-buffer.js";

/** Options of a {@link SplitDriver}. */
export interface SplitDriverOptions extends DriverQueueOptions {
  /** Queue size: a power of two in 1..32768. */
  readonly size: number;
  /** Guest-physical ring addresses (docs/virtqueue.md#ring-layout alignment is checked). */
  readonly addresses: RingAddresses;
  /** Zero the ring headers and event fields first (default true: a fresh queue). */
  readonly reset?: boolean;
}

/**
 * Driver side of one split virtqueue, the counterpart of `SplitQueue` (the device side in `@vhostkit/virtqueue`). It owns free-descriptor
 * management (a free list kept in private memory, never re-read from the shared table), so a
 * misbehaving device can only return ids it was given: other ids are rejected with `BAD_USED_ID`.
 *
 * Typical use: `add(...)` (one or more), `publish()` → kick if it returns true, and after an
 * interrupt `collectUsed()`.
 *
 * @typeParam T - the per-chain token type returned with each used buffer.
 */
export class SplitDriver<T = unknown> {
  /** Queue size. */
  readonly size: number;
  /** Byte sizes of the ring parts. */
  readonly layout: SplitLayout;
  /** True when VIRTIO_F_EVENT_IDX is in use. */
  readonly eventIdx: boolean;
  /** True when indirect tables may be added. */
  readonly indirect: boolean;

  readonly #memory: GuestMemory;
  readonly #desc16: Uint16Array;
  readonly #desc32: Uint32Array;
  /** The descriptor table as a DataView: addresses are stored as u64 without BigInt arithmetic. */
  readonly #descView: DataView;
  readonly #avail16: Uint16Array;
  readonly #used16: Uint16Array;
  readonly #used32: Uint32Array;
  readonly #freeNext: Uint16Array;
  readonly #chainLen: Uint16Array;
  readonly #chainLast: Uint16Array;
  readonly #inFlight: Uint8Array;
  /** The free-running avail index each in-flight head was placed at (u16). */
  readonly #availPos: Uint16Array;
  readonly #tokens: (T | undefined)[];
  #freeHead = 0;
  #numFree: number;
  #availShadow = 0;
  #availPublished = 0;
  #lastUsed = 0;

  /**
   * Maps the rings through `memory` (each must be contiguous and writable) and builds the free list.
   * @throws VirtqueueError `BAD_QUEUE_SIZE`, `MISALIGNED_RING`, `RING_UNMAPPED`.
   */
  constructor(options: SplitDriverOptions) {
    this.layout = splitLayout(options.size);
    this.size = options.size;
    checkRingAlignment(options.addresses);
    this.eventIdx = options.eventIdx ?? false;
    this.indirect = options.indirect ?? false;
    this.#memory = options.memory;
    const a = options.addresses;
    const d = mapRing(options.memory, "guest", "descriptor", a.desc, this.layout.descBytes, 4, true);
    const av = mapRing(options.memory, "guest", "avail", a.avail, this.layout.availBytes, RING_ALIGN.avail, true);
    const u = mapRing(options.memory, "guest", "used", a.used, this.layout.usedBytes, RING_ALIGN.used, options.reset !== false);
    this.#desc16 = u16View(d);
    this.#desc32 = u32View(d);
    this.#descView = new DataView(d.buffer, d.byteOffset, d.byteLength);
    this.#avail16 = u16View(av);
    this.#used16 = u16View(u);
    this.#used32 = u32View(u);
    const n = this.size;
    this.#freeNext = new Uint16Array(n);
    for (let i = 0; i < n; i++) this.#freeNext[i] = (i + 1) & 0xffff;
    this.#chainLen = new Uint16Array(n);
    this.#chainLast = new Uint16Array(n);
    this.#inFlight = new Uint8Array(n);
    this.#availPos = new Uint16Array(n);
    this.#tokens = new Array<T | undefined>(n).fill(undefined);
    this.#numFree = n;
    if (options.reset !== false) {
      this.#avail16[0] = 0;
      this.#avail16[1] = 0;
      this.#avail16[2 + n] = 0;
      this.#used16[0] = 0;
      this.#used16[1] = 0;
      this.#used16[2 + 4 * n] = 0;
    } else {
      this.#availShadow = this.#availPublished = loadAcquire16(this.#avail16, 1);
      this.#lastUsed = loadAcquire16(this.#used16, 1);
    }
  }

  /** Free descriptors left. */
  get numFree(): number {
    return this.#numFree;
  }

  /** The avail index the next added chain gets (u16, includes unpublished chains). */
  get availIndex(): number {
    return this.#availShadow;
  }

  /** The next used index this driver will read (u16). */
  get lastUsedIndex(): number {
    return this.#lastUsed;
  }

  #take(n: number): number {
    if (n > this.#numFree) throw new VirtqueueError("RING_FULL", `${n} descriptors needed, ${this.#numFree} free`, { expected: n, actual: this.#numFree });
    return this.#freeHead;
  }

  #writeDesc(d: number, addr: bigint, len: number, flags: number, next: number): void {
    const w = d * 4;
    this.#descView.setBigUint64(d * 16, addr, true);
    this.#desc32[w + 2] = len;
    this.#desc16[d * 8 + 6] = flags;
    this.#desc16[d * 8 + 7] = next;
  }

  #commit(head: number, last: number, count: number, token: T | undefined): number {
    this.#freeHead = this.#freeNext[last] as number;
    this.#numFree -= count;
    this.#chainLen[head] = count;
    this.#chainLast[head] = last;
    this.#inFlight[head] = 1;
    this.#tokens[head] = token;
    this.#availPos[head] = this.#availShadow;
    // The slot is written before avail.idx is published (publish(): release store).
    this.#avail16[2 + (this.#availShadow & (this.size - 1))] = head;
    this.#availShadow = (this.#availShadow + 1) & 0xffff;
    return head;
  }

  /**
   * Adds a chain: device-readable buffers first, then device-writable ones, one descriptor each.
   * The chain is invisible to the device until {@link publish}. Returns the head id.
   * @throws VirtqueueError `BAD_BUFFER` (no buffers, a bad length or a wrapping range), `RING_FULL`.
   */
  add(readable: readonly DriverBuffer[], writable: readonly DriverBuffer[], token?: T): number {
    const n = checkBuffers(readable, writable);
    const head = this.#take(n);
    let d = head;
    for (let i = 0; i < n; i++) {
      const b = (i < readable.length ? readable[i] : writable[i - readable.length]) as DriverBuffer;
      const next = this.#freeNext[d] as number;
      const last = i === n - 1;
      this.#writeDesc(d, b.addr, b.len, (i >= readable.length ? DescFlag.WRITE : 0) | (last ? 0 : DescFlag.NEXT), last ? 0 : next);
      if (!last) d = next;
    }
    return this.#commit(head, d, n, token);
  }

  /**
   * Adds a chain as one INDIRECT descriptor pointing at a table written at guest address `tableAddr`
   * (16·n bytes, caller-provided memory, may cross regions but must be mapped and writable).
   * @throws VirtqueueError `BAD_BUFFER`, `RING_FULL`, `INDIRECT_NOT_NEGOTIATED`, `INDIRECT_UNMAPPED`.
   */
  addIndirect(readable: readonly DriverBuffer[], writable: readonly DriverBuffer[], tableAddr: bigint, token?: T): number {
    if (!this.indirect) throw new VirtqueueError("INDIRECT_NOT_NEGOTIATED", "addIndirect without VIRTIO_F_INDIRECT_DESC");
    const n = checkBuffers(readable, writable);
    const head = this.#take(1);
    const table = new Uint8Array(n * DESC_SIZE);
    const dv = new DataView(table.buffer);
    for (let i = 0; i < n; i++) {
      const b = (i < readable.length ? readable[i] : writable[i - readable.length]) as DriverBuffer;
      const off = i * DESC_SIZE;
      dv.setBigUint64(off, b.addr, true);
      dv.setUint32(off + 8, b.len, true);
      dv.setUint16(off + 12, (i >= readable.length ? DescFlag.WRITE : 0) | (i < n - 1 ? DescFlag.NEXT : 0), true);
      dv.setUint16(off + 14, i < n - 1 ? i + 1 : 0, true);
    }
    writeIndirectTable(this.#memory, tableAddr, table);
    this.#writeDesc(head, tableAddr, table.length, DescFlag.INDIRECT, 0);
    return this.#commit(head, head, 1, token);
  }

  /**
   * Publishes added chains (one release store of `avail.idx`) and decides whether to kick the
   * device: with EVENT_IDX `vring_need_event(avail_event, new, old)`, otherwise unless the device
   * set NO_NOTIFY. Returns false when nothing new was added.
   */
  publish(): boolean {
    const nw = this.#availShadow;
    const old = this.#availPublished;
    if (nw === old) return false;
    // Ordering: descriptors and ring slots before avail.idx; seq-cst, so the suppression fields
    // below are read after the store (barriers.ts).
    storeRelease16(this.#avail16, 1, nw);
    this.#availPublished = nw;
    if (this.eventIdx) return needEvent(loadAcquire16(this.#used16, 2 + 4 * this.size), nw, old);
    return (loadAcquire16(this.#used16, 0) & USED_F_NO_NOTIFY) === 0;
  }

  /**
   * Number of used elements published by the device and not collected yet.
   * @throws VirtqueueError `USED_OVERRUN` when used.idx moved more than the queue size.
   */
  pendingUsed(): number {
    const p = (loadAcquire16(this.#used16, 1) - this.#lastUsed) & 0xffff;
    if (p > this.size)
      throw new VirtqueueError("USED_OVERRUN", `used.idx moved ${p} past ${this.#lastUsed}, queue size ${this.size}`, { expected: this.size, actual: p });
    return p;
  }

  /**
   * Collects up to `max` used buffers, frees their descriptors and returns them in used order.
   * @throws VirtqueueError `USED_OVERRUN`, `BAD_USED_ID` (an id that is not an in-flight head).
   */
  collectUsed(max = this.size): UsedBuffer<T>[] {
    return collectAsObjects<T>(this.size, max, (batch) => this.collectUsedInto(batch));
  }

  /**
   * As {@link collectUsed}, into a reusable {@link UsedBatch} (at most its capacity): nothing is
   * allocated. Entries already stored stay valid when it throws; `batch.count` says how many.
   * @returns the number of used buffers collected (also `batch.count`).
   * @throws VirtqueueError `USED_OVERRUN`, `BAD_USED_ID` (an id that is not an in-flight head).
   */
  collectUsedInto(batch: UsedBatch<T>, max = batch.capacity): number {
    batch.count = 0;
    const pending = Math.min(this.pendingUsed(), max, batch.capacity);
    const mask = this.size - 1;
    for (let k = 0; k < pending; k++) {
      const slot = this.#lastUsed & mask;
      const id = this.#used32[1 + 2 * slot] as number;
      const len = this.#used32[2 + 2 * slot] as number;
      if (id >= this.size || this.#inFlight[id] !== 1)
        throw new VirtqueueError("BAD_USED_ID", `device returned id ${id}, not an in-flight chain head`, { actual: id });
      this.#inFlight[id] = 0;
      const token = this.#tokens[id];
      this.#tokens[id] = undefined;
      this.#freeNext[this.#chainLast[id] as number] = this.#freeHead;
      this.#freeHead = id;
      this.#numFree += this.#chainLen[id] as number;
      this.#lastUsed = (this.#lastUsed + 1) & 0xffff;
      batch.id[k] = id;
      batch.len[k] = len;
      batch.token[k] = token;
      batch.count = k + 1;
    }
    return batch.count;
  }

  /**
   * The device side is gone (its process died) and a new one will start at the used ring's index
   * (docs/protocol.md#inflight-tracking-and-reconnect): rewrites the available slots from there to
   * `avail.idx` with exactly the chains still outstanding, oldest first, and publishes them. The
   * new device then serves each outstanding chain once, whatever order the old one completed
   * chains in; a device with inflight tracking resumes after the ones it holds, which are the
   * oldest and so keep their slots. Collect what the used ring holds first.
   * @returns the SET_VRING_BASE value: the used index (u16).
   * @throws VirtqueueError `USED_OVERRUN` when used elements are still uncollected, or when the
   *   outstanding chains do not fill the slots (a device that broke the ring).
   */
  requeueOutstanding(): number {
    const uncollected = this.pendingUsed();
    const base = this.#lastUsed;
    const heads: number[] = [];
    for (let h = 0; h < this.size; h++) if (this.#inFlight[h] === 1) heads.push(h);
    const slots = (this.#availShadow - base) & 0xffff;
    if (uncollected !== 0 || heads.length !== slots) {
      throw new VirtqueueError("USED_OVERRUN", `requeue: ${uncollected} used elements uncollected, ${heads.length} chains outstanding for ${slots} slots`, {
        expected: slots,
        actual: heads.length,
      });
    }
    const age = (h: number): number => (this.#availShadow - (this.#availPos[h] as number)) & 0xffff;
    heads.sort((a, b) => age(b) - age(a));
    const mask = this.size - 1;
    heads.forEach((h, k) => {
      this.#avail16[2 + ((base + k) & mask)] = h;
      this.#availPos[h] = (base + k) & 0xffff;
    });
    // Ordering: the rewritten slots before avail.idx (release store), as in publish().
    storeRelease16(this.#avail16, 1, this.#availShadow);
    this.#availPublished = this.#availShadow;
    return base;
  }

  /** Asks the device not to interrupt (NO_INTERRUPT; with EVENT_IDX nothing is written). A hint. */
  disableInterrupts(): void {
    if (!this.eventIdx) storeRelease16(this.#avail16, 0, (this.#avail16[0] as number) | AVAIL_F_NO_INTERRUPT);
  }

  /**
   * Asks for interrupts again (EVENT_IDX: `used_event = last used index`; otherwise clears
   * NO_INTERRUPT), then re-checks: returns true when used buffers are already pending.
   * @throws VirtqueueError `USED_OVERRUN`.
   */
  enableInterrupts(): boolean {
    if (this.eventIdx) storeRelease16(this.#avail16, 2 + this.size, this.#lastUsed);
    else storeRelease16(this.#avail16, 0, (this.#avail16[0] as number) & ~AVAIL_F_NO_INTERRUPT);
    return this.pendingUsed() > 0;
  }

  /** Writes `used_event` directly (EVENT_IDX): interrupt when the device publishes entry `idx`. */
  setUsedEvent(idx: number): void {
    storeRelease16(this.#avail16, 2 + this.size, idx & 0xffff);
  }
}
