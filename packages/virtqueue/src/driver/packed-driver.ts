/**
 * Driver side of a packed virtqueue (VIRTIO 1.2 §2.8; docs/virtqueue.md#packed-rings): what a guest
 * driver (or vhostkit's generic front-end) does — add buffers, decide whether to kick, collect used
 * buffers — with the driver's wrap counters and buffer IDs.
 *
 * @module
 */
import type { GuestMemory } from "@vhostkit/regions";
import { loadAcquire16, loadAcquire32, storeRelease16 } from "../barriers.js";
import { VirtqueueError } from "../errors.js";
import type { VirtqueueErrorCode } from "../errors.js";
import { DESC_SIZE } from "../layout.js";
import type { RingAddresses } from "../layout.js";
import { PackedDescFlag, RingEventFlag, checkPackedRingAlignment, packedLayout, packedNeedEvent } from "../packed-layout.js";
import type { PackedLayout } from "../packed-layout.js";
import { mapRing, u16View, u32View } from "../ring-view.js";
import { checkBuffers, collectAsObjects, type UsedBatch, writeIndirectTable } from "./driver-buffer.js";
import type { DriverBuffer, DriverQueueOptions, UsedBuffer } from "./driver-buffer.js";

const { NEXT, WRITE, INDIRECT, AVAIL, USED } = PackedDescFlag;
/** ID states: free, added (not yet visible to the device), published (the device may use it). */
const ID_FREE = 0;
const ID_ADDED = 1;
const ID_PUBLISHED = 2;

/** Options of a {@link PackedDriver}. */
export interface PackedDriverOptions extends DriverQueueOptions {
  /** Queue size: any integer in 1..32768. */
  readonly size: number;
  /**
   * Guest-physical addresses: `desc` the descriptor ring (16-aligned), `avail` the driver event
   * suppression area, `used` the device event suppression area (4-aligned each).
   */
  readonly addresses: RingAddresses;
  /**
   * Lay the areas out afresh (default true): both event suppression structures zeroed (ENABLE) and
   * every descriptor marked used in the lap before `start` (offsets before `start` in its lap),
   * so a device started at the matching base sees nothing available. With false the memory is
   * left as it is.
   */
  readonly reset?: boolean;
  /**
   * Where the driver starts: ring offset (bits 0–14) and wrap counter (bit 15), both for making
   * buffers available and for collecting them. Default `0x8000` (offset 0, wrap counter 1: a fresh
   * ring). The device must start at the same position: base `start | start << 16`.
   */
  readonly start?: number;
}

/**
 * Driver side of one packed virtqueue, the counterpart of `PackedQueue` (the device side in
 * `@vhostkit/virtqueue`). Buffer IDs and the per-ID list lengths live in private memory, never
 * re-read from the ring: a misbehaving device can only return IDs it was given.
 *
 * Typical use, as for {@link SplitDriver}: `add(...)` (one or more), `publish()` → kick if it
 * returns true, and after an interrupt `collectUsed()`. Added lists are invisible to the device
 * until `publish`, which flips the first list's head flags last.
 *
 * A device error (a used descriptor whose ID is not in flight) marks the queue broken: `brokenBy`
 * holds it and later calls throw `BROKEN`. Wrap bits cannot convict the device: a descriptor not
 * marked used in this lap is simply not used yet.
 *
 * @typeParam T - the per-buffer token type returned with each used buffer.
 */
export class PackedDriver<T = unknown> {
  /** Queue size. */
  readonly size: number;
  /** Byte sizes of the ring areas. */
  readonly layout: PackedLayout;
  /** True when VIRTIO_F_EVENT_IDX is in use. */
  readonly eventIdx: boolean;
  /** True when indirect tables may be added. */
  readonly indirect: boolean;

  readonly #memory: GuestMemory;
  readonly #desc16: Uint16Array;
  readonly #desc32: Uint32Array;
  /** The descriptor ring as a DataView: addresses are stored as u64 without BigInt arithmetic. */
  readonly #descView: DataView;
  readonly #driverEvent: Uint16Array;
  readonly #deviceEvent: Uint16Array;
  readonly #freeNext: Uint16Array;
  readonly #idCount: Uint16Array;
  readonly #idState: Uint8Array;
  /** Where each ID's list starts: ring offset | wrap counter << 15. */
  readonly #idPos: Uint16Array;
  /** Indirect lists: the table's guest address and byte length (0: a direct list). */
  readonly #idTable: BigUint64Array;
  readonly #idTableLen: Uint32Array;
  readonly #tokens: (T | undefined)[];
  readonly #pendPos: Uint16Array;
  readonly #pendFlags: Uint16Array;
  readonly #pendIds: Uint16Array;
  #pendCount = 0;
  #addedSlots = 0;
  #freeHead = 0;
  #numFree: number;
  #availIdx: number;
  #availWrap: number;
  #usedIdx: number;
  #usedWrap: number;
  #broken: VirtqueueError | undefined;

  /**
   * Maps the areas through `memory` (each must be contiguous and writable), lays them out (see
   * {@link PackedDriverOptions.reset}) and builds the free ID list.
   * @throws VirtqueueError `BAD_QUEUE_SIZE`, `MISALIGNED_RING`, `RING_UNMAPPED`; RangeError on a bad `start`.
   */
  constructor(options: PackedDriverOptions) {
    this.layout = packedLayout(options.size);
    const n = (this.size = options.size);
    checkPackedRingAlignment(options.addresses);
    this.eventIdx = options.eventIdx ?? false;
    this.indirect = options.indirect ?? false;
    this.#memory = options.memory;
    const start = options.start ?? 0x8000;
    if (!Number.isInteger(start) || start < 0 || start > 0xffff || (start & 0x7fff) >= n)
      throw new RangeError(`packed driver start 0x${start.toString(16)}: offset not below queue size ${n}`);
    const a = options.addresses;
    const d = mapRing(options.memory, "guest", "descriptor", a.desc, this.layout.descBytes, 4, true);
    this.#desc16 = u16View(d);
    this.#desc32 = u32View(d);
    this.#descView = new DataView(d.buffer, d.byteOffset, d.byteLength);
    this.#driverEvent = u16View(mapRing(options.memory, "guest", "driver event suppression", a.avail, 4, 2, true));
    this.#deviceEvent = u16View(mapRing(options.memory, "guest", "device event suppression", a.used, 4, 2, options.reset !== false));
    this.#availIdx = this.#usedIdx = start & 0x7fff;
    this.#availWrap = this.#usedWrap = start >>> 15;
    this.#freeNext = new Uint16Array(n);
    for (let i = 0; i < n; i++) this.#freeNext[i] = i + 1;
    this.#idCount = new Uint16Array(n);
    this.#idState = new Uint8Array(n);
    this.#idPos = new Uint16Array(n);
    this.#idTable = new BigUint64Array(n);
    this.#idTableLen = new Uint32Array(n);
    this.#tokens = new Array<T | undefined>(n).fill(undefined);
    this.#pendPos = new Uint16Array(n);
    this.#pendFlags = new Uint16Array(n);
    this.#pendIds = new Uint16Array(n);
    this.#numFree = n;
    if (options.reset !== false) {
      d.fill(0);
      this.#driverEvent.fill(0);
      this.#deviceEvent.fill(0);
      // Used in this lap before the start offset, used in the previous lap from it on.
      const w = this.#availWrap;
      for (let i = 0; i < n; i++) this.#desc16[8 * i + 7] = (i < this.#availIdx ? w : w ^ 1) === 1 ? AVAIL | USED : 0;
    }
  }

  /** Free ring descriptors left. */
  get numFree(): number {
    return this.#numFree;
  }

  /** Where the next added list goes: ring offset | wrap counter << 15 (unpublished lists included). */
  get availIndex(): number {
    return this.#availIdx | (this.#availWrap << 15);
  }

  /** Where the next used descriptor is expected: ring offset | wrap counter << 15. */
  get lastUsedIndex(): number {
    return this.#usedIdx | (this.#usedWrap << 15);
  }

  /** The device error that broke the queue, or undefined. */
  get brokenBy(): VirtqueueError | undefined {
    return this.#broken;
  }

  #usable(): void {
    if (this.#broken !== undefined) throw new VirtqueueError("BROKEN", `queue is broken: ${this.#broken.message}`, {}, { cause: this.#broken });
  }

  #deviceError(code: VirtqueueErrorCode, message: string, offset: number, actual: number): VirtqueueError {
    const err = new VirtqueueError(code, message, { offset, actual });
    this.#broken ??= err;
    return err;
  }

  #take(n: number): number {
    if (n > this.#numFree) throw new VirtqueueError("RING_FULL", `${n} descriptors needed, ${this.#numFree} free`, { expected: n, actual: this.#numFree });
    return this.#freeHead; // a free ID exists: IDs in flight <= descriptors in flight < size
  }

  /** The AVAIL/USED bits that make a descriptor available in the current lap. */
  #availBits(): number {
    return this.#availWrap === 1 ? AVAIL : USED;
  }

  /** Writes one descriptor's addr, len and id (not its flags). */
  #writeDesc(pos: number, addr: bigint, len: number, id: number): void {
    this.#descView.setBigUint64(16 * pos, addr, true);
    this.#desc32[4 * pos + 2] = len;
    this.#desc16[8 * pos + 6] = id;
  }

  #advance(): void {
    if (++this.#availIdx === this.size) {
      this.#availIdx = 0;
      this.#availWrap ^= 1;
    }
  }

  /** Offset | wrap counter << 15 of a list head at `head`, the avail position already past the list (it may have crossed the ring end). */
  #headPos(head: number): number {
    return head | ((head < this.#availIdx ? this.#availWrap : this.#availWrap ^ 1) << 15);
  }

  /** Records a list of `count` ring descriptors whose head (at `head`, flags `headFlags`) is still hidden. */
  #commit(id: number, head: number, headFlags: number, count: number, token: T | undefined): number {
    this.#freeHead = this.#freeNext[id] as number;
    this.#numFree -= count;
    this.#addedSlots += count;
    this.#idCount[id] = count;
    this.#idPos[id] = this.#headPos(head);
    this.#idTableLen[id] = 0;
    this.#idState[id] = ID_ADDED;
    this.#tokens[id] = token;
    const c = this.#pendCount++;
    this.#pendPos[c] = head;
    this.#pendFlags[c] = headFlags;
    this.#pendIds[c] = id;
    return id;
  }

  /**
   * Adds a list: device-readable buffers first, then device-writable ones, one ring descriptor
   * each, all carrying the buffer ID. The head's flags are written by {@link publish}. Returns the
   * buffer ID.
   * @throws VirtqueueError `BROKEN`, `BAD_BUFFER` (no buffers, a bad length or a wrapping range), `RING_FULL`.
   */
  add(readable: readonly DriverBuffer[], writable: readonly DriverBuffer[], token?: T): number {
    this.#usable();
    const n = checkBuffers(readable, writable);
    const id = this.#take(n);
    const d16 = this.#desc16;
    const d32 = this.#desc32;
    const dv = this.#descView;
    const size = this.size;
    const nr = readable.length;
    const head = this.#availIdx;
    let pos = head;
    let wrap = this.#availWrap;
    let headFlags = 0;
    for (let i = 0; i < n; i++) {
      const b = (i < nr ? readable[i] : writable[i - nr]) as DriverBuffer;
      const flags = (wrap === 1 ? AVAIL : USED) | (i >= nr ? WRITE : 0) | (i < n - 1 ? NEXT : 0);
      dv.setBigUint64(16 * pos, b.addr, true);
      d32[4 * pos + 2] = b.len;
      d16[8 * pos + 6] = id;
      if (i === 0) headFlags = flags;
      else d16[8 * pos + 7] = flags; // hidden behind the head until publish
      if (++pos === size) {
        pos = 0;
        wrap ^= 1;
      }
    }
    this.#availIdx = pos;
    this.#availWrap = wrap;
    return this.#commit(id, head, headFlags, n, token);
  }

  /**
   * Adds a list as one INDIRECT ring descriptor pointing at a table written at guest address
   * `tableAddr` (16·n bytes, caller-provided memory, may cross regions but must be mapped and
   * writable). Table entries carry only WRITE (their ID and other flags are reserved).
   * @throws VirtqueueError `BROKEN`, `BAD_BUFFER`, `RING_FULL`, `INDIRECT_NOT_NEGOTIATED`, `INDIRECT_UNMAPPED`.
   */
  addIndirect(readable: readonly DriverBuffer[], writable: readonly DriverBuffer[], tableAddr: bigint, token?: T): number {
    this.#usable();
    if (!this.indirect) throw new VirtqueueError("INDIRECT_NOT_NEGOTIATED", "addIndirect without VIRTIO_F_INDIRECT_DESC");
    const n = checkBuffers(readable, writable);
    const id = this.#take(1);
    const table = new Uint8Array(n * DESC_SIZE);
    const dv = new DataView(table.buffer);
    for (let i = 0; i < n; i++) {
      const b = (i < readable.length ? readable[i] : writable[i - readable.length]) as DriverBuffer;
      dv.setBigUint64(i * DESC_SIZE, b.addr, true);
      dv.setUint32(i * DESC_SIZE + 8, b.len, true);
      dv.setUint16(i * DESC_SIZE + 14, i >= readable.length ? WRITE : 0, true);
    }
    writeIndirectTable(this.#memory, tableAddr, table);
    const head = this.#availIdx;
    const headFlags = this.#availBits() | INDIRECT;
    this.#writeDesc(head, tableAddr, table.length, id);
    this.#advance();
    const r = this.#commit(id, head, headFlags, 1, token);
    this.#idTable[id] = tableAddr;
    this.#idTableLen[id] = table.length;
    return r;
  }

  /**
   * Makes the added lists available — every head's flags but the first, then the first one's with
   * one release store — and decides whether to kick the device from the device event suppression
   * structure: DISABLE → no; DESC (with EVENT_IDX) → when its `off_wrap` descriptor was just made
   * available; otherwise yes. Returns false when nothing new was added.
   * @throws VirtqueueError `BROKEN`.
   */
  publish(): boolean {
    this.#usable();
    const n = this.#pendCount;
    if (n === 0) return false;
    const d16 = this.#desc16;
    const pendPos = this.#pendPos;
    const pendFlags = this.#pendFlags;
    const pendIds = this.#pendIds;
    const idState = this.#idState;
    for (let i = n - 1; i > 0; i--) d16[8 * (pendPos[i] as number) + 7] = pendFlags[i] as number;
    // Ordering: release (seq-cst) — every descriptor of the batch is visible before the first
    // head's flags; the event suppression loads below are not satisfied before this store (barriers.ts).
    storeRelease16(d16, 8 * (pendPos[0] as number) + 7, pendFlags[0] as number);
    for (let i = 0; i < n; i++) idState[pendIds[i] as number] = ID_PUBLISHED;
    const added = this.#addedSlots;
    this.#pendCount = 0;
    this.#addedSlots = 0;
    const flags = loadAcquire16(this.#deviceEvent, 1) & 3;
    if (flags === RingEventFlag.DISABLE) return false;
    if (flags !== RingEventFlag.DESC || !this.eventIdx) return true;
    return packedNeedEvent(loadAcquire16(this.#deviceEvent, 0), this.#availWrap === 1, this.size, this.#availIdx, this.#availIdx - added);
  }

  /**
   * True when the descriptor at the used position is marked used in this lap (AVAIL = USED = the
   * used wrap counter): a used buffer is waiting ({@link collectUsed} validates its ID). One acquire load.
   */
  hasUsed(): boolean {
    const f = loadAcquire16(this.#desc16, 8 * this.#usedIdx + 7);
    return f >>> 15 === this.#usedWrap && ((f >>> 7) & 1) === this.#usedWrap;
  }

  /**
   * Collects up to `max` used buffers in the order the device used them, frees their descriptors
   * and IDs, and returns them. `len` is the used descriptor's length when the device set WRITE, else 0.
   * @throws VirtqueueError `BROKEN`; device error `BAD_USED_ID` (an ID not in flight, or not yet
   *   published; the queue is then broken).
   */
  collectUsed(max = this.size): UsedBuffer<T>[] {
    return collectAsObjects<T>(this.size, max, (batch) => this.collectUsedInto(batch));
  }

  /**
   * As {@link collectUsed}, into a reusable {@link UsedBatch} (at most its capacity): nothing is
   * allocated. Entries already stored stay valid when it throws; `batch.count` says how many.
   * @returns the number of used buffers collected (also `batch.count`).
   * @throws VirtqueueError `BROKEN`; device error `BAD_USED_ID`.
   */
  collectUsedInto(batch: UsedBatch<T>, max = batch.capacity): number {
    this.#usable();
    batch.count = 0;
    const d32 = this.#desc32;
    const idState = this.#idState;
    const idCount = this.#idCount;
    const freeNext = this.#freeNext;
    const tokens = this.#tokens;
    const size = this.size;
    const cap = max < batch.capacity ? max : batch.capacity;
    const end = cap < size ? cap : size;
    let pos = this.#usedIdx;
    let w = this.#usedWrap;
    let freeHead = this.#freeHead;
    let freed = 0;
    // Each round frees >= 1 published ID, so the loop ends within the IDs in flight (< size).
    for (let k = 0; k < end; k++) {
      // Ordering: acquire — the len is read after the flags that publish it; the id comes in the
      // same load (the device writes it before the flags; barriers.ts loadAcquire32).
      const word = loadAcquire32(d32, 4 * pos + 3);
      const f = word >>> 16;
      // Used in this lap: AVAIL = USED = wrap. Anything else is not used yet (our own available
      // descriptor, or one of the last lap's: a used one, or a list member no used one overwrote).
      if (f >>> 15 !== w || ((f >>> 7) & 1) !== w) break;
      const id = word & 0xffff;
      if (id >= size || idState[id] !== ID_PUBLISHED) {
        this.#collected(pos, w, freeHead, freed);
        throw this.#deviceError("BAD_USED_ID", `device returned id ${id} at descriptor ${pos}, not a buffer in flight`, pos, id);
      }
      const len = (f & WRITE) !== 0 ? (d32[4 * pos + 2] as number) : 0;
      const count = idCount[id] as number;
      const token = tokens[id];
      tokens[id] = undefined;
      idState[id] = ID_FREE;
      freeNext[id] = freeHead;
      freeHead = id;
      freed += count;
      pos += count;
      if (pos >= size) {
        pos -= size;
        w ^= 1;
      }
      batch.id[k] = id;
      batch.len[k] = len;
      batch.token[k] = token;
      batch.count = k + 1;
    }
    this.#collected(pos, w, freeHead, freed);
    return batch.count;
  }

  /** Stores where {@link collectUsed} got to: the used position, the free ID list's head, the ring descriptors freed. */
  #collected(pos: number, wrap: number, freeHead: number, freed: number): void {
    this.#usedIdx = pos;
    this.#usedWrap = wrap;
    this.#freeHead = freeHead;
    this.#numFree += freed;
  }

  /**
   * Before the ring restarts on a new back-end (docs/protocol.md#inflight-tracking-and-reconnect):
   * returns the SET_VRING_BASE `num` it starts at — both halves the used position. With `chainOf`
   * (the buffers of each list in flight, from its token), the lists in flight are first laid out
   * again from the used position, oldest first, under their IDs, in the descriptors they took
   * before (an indirect list points at its table again): a back-end that keeps no inflight record
   * pops each of them once. Without it the ring is left as it is: a back-end that recorded the
   * lists it took resubmits those and resumes its avail position after them.
   * @throws VirtqueueError `USED_OVERRUN` when used buffers are uncollected or lists unpublished,
   *   `BAD_BUFFER` when `chainOf` gives a list another length than it had.
   */
  requeueOutstanding(chainOf?: (token: T | undefined) => { readonly readable: readonly DriverBuffer[]; readonly writable: readonly DriverBuffer[] }): number {
    if (this.hasUsed() || this.#pendCount > 0)
      throw new VirtqueueError("USED_OVERRUN", "requeue: used buffers uncollected or lists not yet published", { actual: this.#pendCount });
    const used = this.lastUsedIndex;
    if (chainOf !== undefined) {
      const size = this.size;
      const ids: number[] = [];
      for (let id = 0; id < size; id++) if (this.#idState[id] === ID_PUBLISHED) ids.push(id);
      const age = (id: number): number => {
        const p = this.#idPos[id] as number;
        return (p & 0x7fff) + (p >>> 15 === this.#usedWrap ? 0 : size) - this.#usedIdx;
      };
      ids.sort((a, b) => age(a) - age(b));
      const end = this.availIndex;
      this.#availIdx = this.#usedIdx;
      this.#availWrap = this.#usedWrap;
      for (const id of ids) {
        const tableLen = this.#idTableLen[id] as number;
        const head = this.#availIdx;
        let headFlags: number;
        if (tableLen > 0) {
          headFlags = this.#availBits() | INDIRECT;
          this.#writeDesc(head, this.#idTable[id] as bigint, tableLen, id);
          this.#advance();
        } else {
          const { readable, writable } = chainOf(this.#tokens[id]);
          const n = readable.length + writable.length;
          const took = this.#idCount[id] as number;
          if (n !== took) throw new VirtqueueError("BAD_BUFFER", `requeue: list ${id} of ${n} buffers, it took ${took}`, { expected: took, actual: n });
          headFlags = 0;
          for (let i = 0; i < n; i++) {
            const b = (i < readable.length ? readable[i] : writable[i - readable.length]) as DriverBuffer;
            const flags = this.#availBits() | (i >= readable.length ? WRITE : 0) | (i < n - 1 ? NEXT : 0);
            this.#writeDesc(this.#availIdx, b.addr, b.len, id);
            if (i === 0) headFlags = flags;
            else this.#desc16[8 * this.#availIdx + 7] = flags;
            this.#advance();
          }
        }
        this.#idPos[id] = this.#headPos(head);
        // Ordering: the list's other descriptors before its head (release store).
        storeRelease16(this.#desc16, 8 * head + 7, headFlags);
      }
      if (this.availIndex !== end) throw new VirtqueueError("USED_OVERRUN", `requeue ended at 0x${this.availIndex.toString(16)}, not 0x${end.toString(16)}`);
    }
    return (used | (used << 16)) >>> 0;
  }

  /** Asks the device not to interrupt (RING_EVENT_FLAGS_DISABLE, with or without EVENT_IDX). A hint. */
  disableInterrupts(): void {
    storeRelease16(this.#driverEvent, 1, RingEventFlag.DISABLE);
  }

  /**
   * Asks for interrupts again (EVENT_IDX: an event at the used position; otherwise
   * RING_EVENT_FLAGS_ENABLE), then re-checks: returns true when a used buffer may already be waiting.
   */
  enableInterrupts(): boolean {
    // Ordering: off_wrap before flags, both seq-cst, so the re-check below is not satisfied early.
    if (this.eventIdx) {
      storeRelease16(this.#driverEvent, 0, this.lastUsedIndex);
      storeRelease16(this.#driverEvent, 1, RingEventFlag.DESC);
    } else {
      storeRelease16(this.#driverEvent, 1, RingEventFlag.ENABLE);
    }
    return this.hasUsed();
  }
}
