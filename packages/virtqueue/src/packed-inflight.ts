/**
 * The packed-ring queue region of vhost-user inflight I/O tracking
 * (docs/protocol.md#inflight-tracking-and-reconnect): a back-end records, in memory it shares with
 * the front-end, every descriptor list it has taken and not yet completed — the descriptors
 * themselves, since used descriptors overwrite a packed ring's slots — so that a restarted back-end
 * process can serve them again.
 *
 * Layout of one queue's region (little-endian, offsets in bytes):
 *
 * | offset | field |
 * |---:|---|
 * | 0 | u64 features (0) |
 * | 8 | u16 version (1; 0 = never used) |
 * | 10 | u16 desc_num (entries; the queue size the region was made for) |
 * | 12 | u16 free_head, 14 u16 old_free_head (the free entry list) |
 * | 16 | u16 used_idx, 18 u16 old_used_idx (ring offsets) |
 * | 20 | u8 used_wrap_counter, 21 u8 old_used_wrap_counter |
 * | 32 + 32·i | entry i: u8 inflight at 0, u16 next at 2, u16 last at 4, u16 num at 6, u64 counter at 8, u16 id at 16, u16 flags at 18, u32 len at 20, u64 addr at 24 |
 *
 * `inflight`, `last`, `num` and `counter` mean something in the head entry of a list only; every
 * entry of a list holds one ring descriptor. The `old_*` fields are the state as of the last
 * completed used batch: a restarted back-end either commits the batch in progress (its first used
 * descriptor reached the ring) or rolls it back to them.
 *
 * @module
 */
import type { PackedVringBase } from "@vhostkit/wire";
import { VirtqueueError } from "./errors.js";
import { regionViews } from "./inflight-region.js";
import { PackedDescFlag, isValidPackedQueueSize } from "./packed-layout.js";

/** The region version this package writes and reads (0 means a region no back-end used yet). */
export const PACKED_INFLIGHT_VERSION = 1;

const HEADER_BYTES = 32;
const ENTRY_BYTES = 32;
const QUEUE_ALIGN = 64;
const TWO32 = 0x1_0000_0000;
// Header fields as u16 indices, and the two wrap counters as byte offsets.
const H_VERSION = 4;
const H_DESC_NUM = 5;
const H_FREE = 6;
const H_OLD_FREE = 7;
const H_USED = 8;
const H_OLD_USED = 9;
const B_WRAP = 20;
const B_OLD_WRAP = 21;
// Entry fields (u16) as byte offsets.
const E_NEXT = 2;
const E_LAST = 4;
const E_NUM = 6;
const E_ID = 16;
const E_FLAGS = 18;
const { NEXT, WRITE, INDIRECT, AVAIL, USED } = PackedDescFlag;

/**
 * Bytes one queue of `queueSize` descriptors takes in the inflight area: the 32-byte header and 32
 * per entry, rounded up to 64 (as DPDK's vhost library sizes a packed region).
 * @throws VirtqueueError `BAD_QUEUE_SIZE` for a size not in 1..32768.
 */
export function packedInflightQueueBytes(queueSize: number): number {
  if (!isValidPackedQueueSize(queueSize))
    throw new VirtqueueError("BAD_QUEUE_SIZE", `inflight queue size ${queueSize} is not an integer in 1..32768`, { actual: queueSize });
  return Math.ceil((HEADER_BYTES + ENTRY_BYTES * queueSize) / QUEUE_ALIGN) * QUEUE_ALIGN;
}

/** What {@link PackedInflight.recover} found in the region. */
export interface PackedInflightRecovery {
  /** Where the device resumes: the used position of the last completed batch, the avail position past every list in flight. */
  readonly base: PackedVringBase;
  /** Head entries of the lists to serve again, oldest first (by their counters). */
  readonly resubmit: readonly number[];
  /** Ring descriptors those lists took, in all. */
  readonly slots: number;
}

/**
 * One queue's inflight region, packed-ring layout (see the module notes). The device side of the
 * ring ({@link PackedQueue} with its `inflight` option) calls it in the order the protocol requires:
 *
 * 1. {@link PackedInflight.record} for every list it takes, before the device sees it;
 * 2. {@link PackedInflight.used} for every used descriptor queued;
 * 3. {@link PackedInflight.beforePublish} before the batch's first used descriptor gets its flags
 *    (the batch's entries return to the free list, the used position is recorded),
 *    {@link PackedInflight.afterPublish} after (or {@link PackedInflight.dropPending} when the batch is dropped);
 * 4. {@link PackedInflight.recover} when a ring starts: a region left by an earlier back-end
 *    process gives the lists to serve again, {@link PackedInflight.replay} their descriptors.
 *
 * The region is shared with the front-end, so nothing read from it is trusted: every index is
 * bounded by the entry count, every walk by the entries, list lengths by the ring size, and a
 * region that does not add up is refused with `BAD_INFLIGHT`.
 */
export class PackedInflight {
  /** Entries in the region (the queue size it was made for). */
  readonly descNum: number;
  readonly #u8: Uint8Array;
  readonly #u16: Uint16Array;
  readonly #u32: Uint32Array;
  #counter = 0;
  /** Buffer ID → head entry of its list (valid for the IDs in flight). */
  readonly #entryOf: Uint16Array;
  /** Head entries of the used descriptors queued and not yet published. */
  readonly #pending: Uint16Array;
  #pendingCount = 0;
  /** What the last {@link PackedInflight.recover} found (`undefined` before the first). */
  lastRecovery: PackedInflightRecovery | undefined;

  /**
   * @param region - this queue's bytes of the inflight area (borrowed; must stay mapped while the
   *   queue uses it), at least {@link packedInflightQueueBytes}(`descNum`) long and 8-byte aligned.
   * @param descNum - the queue size the area was made for (its `queue_size`).
   * @throws VirtqueueError `BAD_QUEUE_SIZE`; RangeError when `region` is too short or misaligned.
   */
  constructor(region: Uint8Array, descNum: number) {
    const v = regionViews(region, packedInflightQueueBytes(descNum));
    this.descNum = descNum;
    this.#u8 = v.u8;
    this.#u16 = v.u16;
    this.#u32 = v.u32;
    this.#entryOf = new Uint16Array(descNum);
    this.#pending = new Uint16Array(descNum);
  }

  /** The region's version field (0: no back-end used it yet). */
  get version(): number {
    return this.#u16[H_VERSION] as number;
  }

  /** True when entry `entry` is the head of a list in flight. */
  isInflight(entry: number): boolean {
    return entry >= 0 && entry < this.descNum && this.#u8[HEADER_BYTES + ENTRY_BYTES * entry] === 1;
  }

  #bad(message: string, detail: { expected?: number; actual?: number } = {}): VirtqueueError {
    return new VirtqueueError("BAD_INFLIGHT", `inflight region: ${message}`, detail);
  }

  /** u16 index of the u16 field at byte `off` of entry `e`. */
  #w(e: number, off: number): number {
    return (HEADER_BYTES + ENTRY_BYTES * e + off) >>> 1;
  }

  /**
   * A ring of `ringSize` descriptors starts at `base` (SET_VRING_BASE), its descriptor ring viewed
   * as `ring16` (u16 words). A fresh region (version 0, or a version this package does not know)
   * is initialised and `base` kept. A used region is repaired first — a used batch in progress is
   * committed when its first used descriptor reached the ring (the descriptor at `old_used_idx` no
   * longer carries the available flags of `old_used_wrap_counter`), else rolled back to the `old_*`
   * fields — then every list flagged in flight is checked and resubmitted in counter order; the
   * device resumes at the recorded used position, its avail position past those lists.
   * @throws VirtqueueError `BAD_QUEUE_SIZE` when `ringSize` exceeds the region's entries,
   *   `BAD_INFLIGHT` for a region that does not add up (an index out of range, a free list or a
   *   list that loops or overlaps another, a list longer than the ring, a buffer ID out of range or
   *   twice in flight, more descriptors in flight than the ring has).
   */
  recover(ring16: Uint16Array, ringSize: number, base: PackedVringBase): PackedInflightRecovery {
    if (ringSize > this.descNum)
      throw new VirtqueueError("BAD_QUEUE_SIZE", `ring of ${ringSize} descriptors, inflight region made for ${this.descNum}`, {
        expected: this.descNum,
        actual: ringSize,
      });
    const u16 = this.#u16;
    const u8 = this.#u8;
    const n = this.descNum;
    this.#pendingCount = 0;
    if (this.version !== PACKED_INFLIGHT_VERSION) {
      u8.fill(0);
      u16[H_VERSION] = PACKED_INFLIGHT_VERSION;
      u16[H_DESC_NUM] = n;
      for (let e = 0; e < n; e++) u16[this.#w(e, E_NEXT)] = e + 1;
      u16[H_USED] = u16[H_OLD_USED] = base.usedIdx;
      u8[B_WRAP] = u8[B_OLD_WRAP] = base.usedWrap ? 1 : 0;
      this.#counter = 0;
      this.lastRecovery = { base, resubmit: [], slots: 0 };
      return this.lastRecovery;
    }
    if (u16[H_DESC_NUM] !== n) throw this.#bad(`desc_num ${u16[H_DESC_NUM]}, area made for ${n}`, { expected: n, actual: u16[H_DESC_NUM] as number });
    for (const [name, v, max] of [
      ["used_idx", u16[H_USED] as number, ringSize - 1],
      ["old_used_idx", u16[H_OLD_USED] as number, ringSize - 1],
      ["used_wrap_counter", u8[B_WRAP] as number, 1],
      ["old_used_wrap_counter", u8[B_OLD_WRAP] as number, 1],
      ["free_head", u16[H_FREE] as number, n],
      ["old_free_head", u16[H_OLD_FREE] as number, n],
    ] as const) {
      if (v > max) throw this.#bad(`${name} ${v} > ${max}`, { expected: max, actual: v });
    }
    if (u16[H_USED] !== u16[H_OLD_USED] || u8[B_WRAP] !== u8[B_OLD_WRAP]) {
      const w = u8[B_OLD_WRAP] as number;
      const availFlags = w === 1 ? AVAIL : USED;
      const f = (ring16[8 * (u16[H_OLD_USED] as number) + 7] as number) & (AVAIL | USED);
      if (f !== availFlags) this.#commit(); // the batch reached the ring: it is done
    }
    // Roll back whatever is newer than the last complete batch.
    u16[H_FREE] = u16[H_OLD_FREE] as number;
    u16[H_USED] = u16[H_OLD_USED] as number;
    u8[B_WRAP] = u8[B_OLD_WRAP] as number;
    // Entries on the free list hold nothing in flight (a list recorded halfway, a batch committed).
    const owner = new Int32Array(n).fill(-1);
    let free = 0;
    for (let e = u16[H_FREE] as number; e < n; e = u16[this.#w(e, E_NEXT)] as number) {
      if (owner[e] !== -1 || ++free > n) throw this.#bad(`free list loops at entry ${e}`, { actual: e });
      owner[e] = -2;
      u8[HEADER_BYTES + ENTRY_BYTES * e] = 0;
    }
    const found: { head: number; counter: number }[] = [];
    const idSeen = new Uint8Array(ringSize);
    let slots = 0;
    for (let h = 0; h < n; h++) {
      const at = HEADER_BYTES + ENTRY_BYTES * h;
      if (u8[at] === 0) continue;
      if (u8[at] !== 1) throw this.#bad(`entry ${h}: inflight ${u8[at]}`, { actual: u8[at] as number });
      const num = u16[this.#w(h, E_NUM)] as number;
      const last = u16[this.#w(h, E_LAST)] as number;
      if (num < 1 || num > ringSize) throw this.#bad(`entry ${h}: list of ${num} descriptors, ring of ${ringSize}`, { expected: ringSize, actual: num });
      let e = h;
      for (let k = 0; ; k++) {
        if (e >= n || owner[e] !== -1) throw this.#bad(`list at entry ${h} reaches entry ${e}, out of range or not its own`, { actual: e });
        owner[e] = h;
        if (k === num - 1) break;
        e = u16[this.#w(e, E_NEXT)] as number;
      }
      if (e !== last) throw this.#bad(`list at entry ${h} ends at entry ${e}, its last is ${last}`, { expected: e, actual: last });
      const id = u16[this.#w(last, E_ID)] as number;
      if (id >= ringSize || idSeen[id] === 1) throw this.#bad(`list at entry ${h}: buffer id ${id} out of range or twice in flight`, { actual: id });
      idSeen[id] = 1;
      this.#entryOf[id] = h;
      slots += num;
      const w = (at + 8) >>> 2;
      found.push({ head: h, counter: (this.#u32[w] as number) + (this.#u32[w + 1] as number) * TWO32 });
    }
    if (slots > ringSize) throw this.#bad(`${slots} descriptors in flight, ring of ${ringSize}`, { expected: ringSize, actual: slots });
    // A fresh free list of every entry no list holds, so recording resumes on a consistent region.
    let head = n;
    for (let e = n - 1; e >= 0; e--) {
      if (owner[e] !== -1 && owner[e] !== -2) continue;
      u16[this.#w(e, E_NEXT)] = head;
      head = e;
    }
    u16[H_FREE] = u16[H_OLD_FREE] = head;
    found.sort((a, b) => a.counter - b.counter || a.head - b.head);
    const lastFound = found[found.length - 1];
    this.#counter = lastFound === undefined ? 0 : Math.min(lastFound.counter + 1, Number.MAX_SAFE_INTEGER);
    const usedIdx = u16[H_USED] as number;
    const usedWrap = u8[B_WRAP] === 1;
    let availIdx = usedIdx + slots;
    let availWrap = usedWrap;
    if (availIdx >= ringSize) {
      availIdx -= ringSize;
      availWrap = !availWrap;
    }
    this.lastRecovery = { base: { availIdx, availWrap, usedIdx, usedWrap }, resubmit: found.map((f) => f.head), slots };
    return this.lastRecovery;
  }

  #commit(): void {
    const u16 = this.#u16;
    u16[H_OLD_FREE] = u16[H_FREE] as number;
    u16[H_OLD_USED] = u16[H_USED] as number;
    this.#u8[B_OLD_WRAP] = this.#u8[B_WRAP] as number;
  }

  /**
   * Writes the descriptors of the list at head entry `head` into `ring32` (4 int32 words per
   * descriptor, the packed descriptor layout) from descriptor `at` on, as a list made available in
   * lap 1: recorded addr, len, id and the WRITE / INDIRECT flags; NEXT on all but the last. The
   * device walks them as it walks its ring, so they are validated as any available list is.
   * @returns the number of descriptors written.
   */
  replay(head: number, ring32: Int32Array, at: number): number {
    const num = this.#u16[this.#w(head, E_NUM)] as number;
    let e = head;
    for (let k = 0; k < num; k++) {
      const src = (HEADER_BYTES + ENTRY_BYTES * e) >>> 2;
      const u32 = this.#u32;
      const w = 4 * (at + k);
      ring32[w] = u32[src + 6] as number;
      ring32[w + 1] = u32[src + 7] as number;
      ring32[w + 2] = u32[src + 5] as number;
      const flags = ((this.#u16[this.#w(e, E_FLAGS)] as number) & (WRITE | INDIRECT)) | AVAIL | (k < num - 1 ? NEXT : 0);
      ring32[w + 3] = (this.#u16[this.#w(e, E_ID)] as number) | (flags << 16);
      e = this.#u16[this.#w(e, E_NEXT)] as number;
    }
    return num;
  }

  /** The list of buffer `id` was resubmitted from head entry `head` (it completes as any other). */
  adopt(id: number, head: number): void {
    this.#entryOf[id] = head;
  }

  /**
   * The list of buffer `id`, `count` ring descriptors from offset `pos` of `ring32` (a ring of
   * `size`), was taken: its descriptors go into free entries, its head entry gets the next counter
   * and the inflight flag, then `old_free_head` moves past it (a list recorded halfway stays on the
   * free list).
   * @throws VirtqueueError `BAD_INFLIGHT` when the free list ran out (the front-end rewrote the region).
   */
  record(id: number, ring32: Int32Array, pos: number, count: number, size: number): void {
    const u16 = this.#u16;
    const u32 = this.#u32;
    const n = this.descNum;
    const h = u16[H_OLD_FREE] as number;
    if (h >= n) throw this.#bad(`no free entry for buffer ${id}`, { actual: h });
    const at = HEADER_BYTES + ENTRY_BYTES * h;
    u16[this.#w(h, E_NUM)] = 0;
    const c = this.#counter++;
    u32[(at + 8) >>> 2] = c >>> 0;
    u32[((at + 8) >>> 2) + 1] = Math.floor(c / TWO32);
    this.#u8[at] = 1;
    let q = pos;
    for (let k = 0; k < count; k++) {
      const e = u16[H_FREE] as number;
      if (e >= n) throw this.#bad(`no free entry for descriptor ${k} of buffer ${id}`, { actual: e });
      if (k === count - 1) u16[this.#w(h, E_LAST)] = e;
      u16[this.#w(h, E_NUM)] = k + 1;
      const dst = (HEADER_BYTES + ENTRY_BYTES * e) >>> 2;
      const w = 4 * q;
      u32[dst + 6] = ring32[w] as number;
      u32[dst + 7] = ring32[w + 1] as number;
      u32[dst + 5] = ring32[w + 2] as number;
      u32[dst + 4] = ring32[w + 3] as number; // id, flags
      u16[H_FREE] = u16[this.#w(e, E_NEXT)] as number;
      if (++q === size) q = 0;
    }
    u16[H_OLD_FREE] = u16[H_FREE] as number;
    this.#entryOf[id] = h;
  }

  /**
   * The `n` lists of one pop (buffer IDs `heads`, ring descriptors each `idCount[id]`), laid out
   * from offset `pos` of `ring32` (a ring of `size`), were taken: each is {@link PackedInflight.record}ed.
   * @throws VirtqueueError `BAD_INFLIGHT` as {@link PackedInflight.record}.
   */
  recordPopped(heads: Uint16Array, n: number, idCount: Uint16Array, ring32: Int32Array, pos: number, size: number): void {
    for (let k = 0, q = pos; k < n; k++) {
      const id = heads[k] as number;
      const count = idCount[id] as number;
      this.record(id, ring32, q, count, size);
      q = (q + count) % size;
    }
  }

  /**
   * Buffer `id` goes into a used descriptor: its list joins the batch. The region does not change
   * yet (lists may still be taken before the batch is published, and they take entries from the
   * free list as of the last batch).
   */
  used(id: number): void {
    if (this.#pendingCount < this.#pending.length) this.#pending[this.#pendingCount++] = this.#entryOf[id] as number;
  }

  /**
   * The queued batch is about to be published: each of its lists returns to the free list
   * (`free_head`, not yet `old_free_head`), then the used position after the batch is recorded.
   */
  beforePublish(usedIdx: number, usedWrap: number): void {
    const u16 = this.#u16;
    const p = this.#pending;
    for (let k = 0; k < this.#pendingCount; k++) {
      const h = p[k] as number;
      u16[this.#w(u16[this.#w(h, E_LAST)] as number, E_NEXT)] = u16[H_FREE] as number;
      u16[H_FREE] = h;
    }
    u16[H_USED] = usedIdx;
    this.#u8[B_WRAP] = usedWrap;
  }

  /** The batch's flags are in the ring: its lists are no longer in flight, and the `old_*` fields follow. */
  afterPublish(): void {
    const p = this.#pending;
    for (let k = 0; k < this.#pendingCount; k++) this.#u8[HEADER_BYTES + ENTRY_BYTES * (p[k] as number)] = 0;
    this.#pendingCount = 0;
    this.#commit();
  }

  /** The queued batch was dropped (a broken queue stopped): the free list and used position roll back. */
  dropPending(): void {
    const u16 = this.#u16;
    u16[H_FREE] = u16[H_OLD_FREE] as number;
    u16[H_USED] = u16[H_OLD_USED] as number;
    this.#u8[B_WRAP] = this.#u8[B_OLD_WRAP] as number;
    this.#pendingCount = 0;
  }
}
