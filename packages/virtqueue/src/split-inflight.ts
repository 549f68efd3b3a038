/**
 * The split-ring queue region of vhost-user inflight I/O tracking (docs/protocol.md#inflight-tracking-and-reconnect):
 * a back-end records in memory it shares with the front-end which chains it has taken and not yet
 * completed, so that a restarted back-end process can serve them again.
 *
 * Layout of one queue's region (little-endian, offsets in bytes):
 *
 * | offset | field |
 * |---:|---|
 * | 0 | u64 features (0) |
 * | 8 | u16 version (1; 0 = never used) |
 * | 10 | u16 desc_num (the queue size the region was made for) |
 * | 12 | u16 last_batch_head (head of the list of the last used batch) |
 * | 14 | u16 used_idx (the used ring's idx once the last batch was fully recorded) |
 * | 16 + 16·i | descriptor i: u8 inflight at 0, u16 next at 6, u64 counter at 8 |
 *
 * @module
 */
import { VirtqueueError } from "./errors.js";
import { regionViews } from "./inflight-region.js";
import { isValidQueueSize } from "./layout.js";

/** The region version this package writes and reads (0 means a region no back-end used yet). */
export const SPLIT_INFLIGHT_VERSION = 1;

/** Bytes of the queue header before the descriptor entries. */
const HEADER_BYTES = 16;
/** Bytes of one descriptor entry. */
const ENTRY_BYTES = 16;
/** Queue regions start at multiples of this. */
const QUEUE_ALIGN = 64;
const TWO32 = 0x1_0000_0000;

/**
 * Bytes one queue of `queueSize` descriptors takes in the inflight area: 16 per descriptor plus 2,
 * rounded up to 64 — the size libvhost-user computes, so an area is interchangeable with its
 * back-ends; it always leaves room for the 16-byte header.
 * @throws VirtqueueError `BAD_QUEUE_SIZE` for a size that is not a power of two in 1..32768.
 */
export function splitInflightQueueBytes(queueSize: number): number {
  if (!isValidQueueSize(queueSize))
    throw new VirtqueueError("BAD_QUEUE_SIZE", `inflight queue size ${queueSize} is not a power of two in 1..32768`, { actual: queueSize });
  return Math.ceil((ENTRY_BYTES * queueSize + 2) / QUEUE_ALIGN) * QUEUE_ALIGN;
}

/** What {@link SplitInflight.recover} found in the region. */
export interface SplitInflightRecovery {
  /** The next avail index to read: the used index plus the chains still in flight. */
  readonly nextAvail: number;
  /** Heads to hand to the device again, oldest first (by their counters). */
  readonly resubmit: readonly number[];
}

/**
 * One queue's inflight region, split-ring layout (see the module notes). The device side of the
 * ring ({@link SplitQueue} with its `inflight` option) calls it in the order the protocol requires:
 *
 * 1. {@link SplitInflight.markAvailable} for every head it takes, before the device sees the chain;
 * 2. {@link SplitInflight.beforeUsed} for every used element, before `used.idx` moves;
 * 3. {@link SplitInflight.afterPublish} once `used.idx` was stored;
 * 4. {@link SplitInflight.recover} when a ring starts: a region left by an earlier back-end process
 *    gives the chains to serve again.
 *
 * The region is shared with the front-end, so nothing read from it is trusted: heads and list links
 * are bounded by the ring size, walks by the descriptor count.
 */
export class SplitInflight {
  /** Descriptor entries in the region (the queue size it was made for). */
  readonly descNum: number;
  readonly #u8: Uint8Array;
  readonly #u16: Uint16Array;
  readonly #u32: Uint32Array;
  /** Next counter value (u64 in the region, a safe integer here). */
  #counter = 0;
  /** Heads queued as used and not yet published, in used order (the queue never has more than its size pending). */
  readonly #pending: Uint16Array;
  #pendingCount = 0;
  /** What the last {@link SplitInflight.recover} found (`undefined` before the first). */
  lastRecovery: SplitInflightRecovery | undefined;

  /**
   * @param region - this queue's bytes of the inflight area (borrowed; must stay mapped while the
   *   queue uses it), at least {@link splitInflightQueueBytes}(`descNum`) long and 8-byte aligned.
   * @param descNum - the queue size the area was made for (its `queue_size`).
   * @throws VirtqueueError `BAD_QUEUE_SIZE`; RangeError when `region` is too short or misaligned.
   */
  constructor(region: Uint8Array, descNum: number) {
    const v = regionViews(region, splitInflightQueueBytes(descNum));
    this.descNum = descNum;
    this.#u8 = v.u8;
    this.#u16 = v.u16;
    this.#u32 = v.u32;
    this.#pending = new Uint16Array(descNum);
  }

  /** The region's version field (0: no back-end used it yet). */
  get version(): number {
    return this.#u16[4] as number;
  }

  /** The region's desc_num field as stored (what the back-end that used it last wrote). */
  get storedDescNum(): number {
    return this.#u16[5] as number;
  }

  /** True when descriptor `head`'s inflight flag is set. */
  isInflight(head: number): boolean {
    return head >= 0 && head < this.descNum && this.#u8[HEADER_BYTES + ENTRY_BYTES * head] === 1;
  }

  /**
   * A ring of `ringSize` descriptors starts whose used ring holds `usedIdx`. A fresh region
   * (version 0) is initialised and `base` (the SET_VRING_BASE value) kept. A used region is
   * repaired first — when the used ring moved past the region's `used_idx`, the last batch reached
   * the driver but its flags were not cleared: the `usedIdx - used_idx` entries of the list from
   * `last_batch_head` are cleared — and then every flagged head below `ringSize` is resubmitted in
   * counter order, the avail index resuming after them (libvhost-user does the same). Flags on
   * heads at or above `ringSize` cannot belong to this ring and are cleared.
   * @throws VirtqueueError `BAD_QUEUE_SIZE` when `ringSize` exceeds the region's descriptor count.
   */
  recover(usedIdx: number, ringSize: number, base: number): SplitInflightRecovery {
    if (ringSize > this.descNum)
      throw new VirtqueueError("BAD_QUEUE_SIZE", `ring of ${ringSize} descriptors, inflight region made for ${this.descNum}`, {
        expected: this.descNum,
        actual: ringSize,
      });
    const u16 = this.#u16;
    this.#pendingCount = 0;
    if (this.version !== SPLIT_INFLIGHT_VERSION) {
      // A fresh region (or one in a format we do not know, which is then reset).
      this.#u8.fill(0);
      u16[4] = SPLIT_INFLIGHT_VERSION;
      u16[5] = this.descNum;
      u16[7] = usedIdx;
      this.#counter = 0;
      this.lastRecovery = { nextAvail: base, resubmit: [] };
      return this.lastRecovery;
    }
    const recorded = u16[7] as number;
    if (recorded !== usedIdx) {
      // The used index moved, the flags did not all follow: clear the last batch, bounded.
      const n = Math.min((usedIdx - recorded) & 0xffff, this.descNum);
      let head = u16[6] as number;
      for (let k = 0; k < n && head < this.descNum; k++) {
        this.#u8[HEADER_BYTES + ENTRY_BYTES * head] = 0;
        head = u16[(HEADER_BYTES + ENTRY_BYTES * head + 6) >>> 1] as number;
      }
      u16[7] = usedIdx;
    }
    u16[5] = this.descNum;
    const found: { head: number; counter: number }[] = [];
    for (let i = 0; i < this.descNum; i++) {
      const at = HEADER_BYTES + ENTRY_BYTES * i;
      if (this.#u8[at] === 0) continue;
      if (i >= ringSize) {
        this.#u8[at] = 0;
        continue;
      }
      const w = (at + 8) >>> 2;
      found.push({ head: i, counter: (this.#u32[w] as number) + (this.#u32[w + 1] as number) * TWO32 });
    }
    found.sort((a, b) => a.counter - b.counter || a.head - b.head);
    const last = found[found.length - 1];
    this.#counter = last === undefined ? 0 : Math.min(last.counter + 1, Number.MAX_SAFE_INTEGER);
    this.lastRecovery = { nextAvail: (usedIdx + found.length) & 0xffff, resubmit: found.map((f) => f.head) };
    return this.lastRecovery;
  }

  /** Head `head` was taken from the available ring (or resubmitted): counter, then the inflight flag. */
  markAvailable(head: number): void {
    const at = HEADER_BYTES + ENTRY_BYTES * head;
    const w = (at + 8) >>> 2;
    const c = this.#counter++;
    this.#u32[w] = c >>> 0;
    this.#u32[w + 1] = Math.floor(c / TWO32);
    this.#u8[at] = 1;
  }

  /** `head` goes into the used ring: it joins the last-batch list (`next` = old last_batch_head). */
  beforeUsed(head: number): void {
    const u16 = this.#u16;
    u16[(HEADER_BYTES + ENTRY_BYTES * head + 6) >>> 1] = u16[6] as number;
    u16[6] = head;
    if (this.#pendingCount < this.#pending.length) this.#pending[this.#pendingCount++] = head;
  }

  /** `used.idx` was stored as `usedIdx`: the published heads are no longer in flight, then `used_idx` follows. */
  afterPublish(usedIdx: number): void {
    const p = this.#pending;
    for (let k = 0; k < this.#pendingCount; k++) this.#u8[HEADER_BYTES + ENTRY_BYTES * (p[k] as number)] = 0;
    this.#pendingCount = 0;
    this.#u16[7] = usedIdx;
  }
}
