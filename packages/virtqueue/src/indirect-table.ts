/**
 * Indirect descriptor tables, device side, for both ring formats: opening a table (length, wrap
 * and mapping checks; through the memory table only) and appending its validated entries to a
 * {@link ChainBatch}. Split and packed descriptors put `addr` (u64) at 0 and `len` (u32) at 8, so
 * this part is format-independent; following the entries (`next` links, or in order) is not.
 *
 * @module
 */
import type { GuestAddress, GuestMemory } from "@vhostkit/regions";
import type { ChainBatch } from "./chain-batch.js";
import { DescFlag } from "./layout.js";
import { guestFault } from "./queue-health.js";
import type { GuestErrorSink } from "./segment-cursor.js";

const TWO32 = 0x1_0000_0000;

/** Running totals of a chain walk: device-readable and -writable bytes, and whether a writable one was seen. */
export interface ChainTotals {
  /** Device-readable bytes so far. */
  readable: number;
  /** Device-writable bytes so far. */
  writable: number;
  /** A device-writable descriptor was seen (a readable one after it is out of order). */
  seenWrite: boolean;
}

/**
 * Opens indirect tables for one queue: a live view when a table lies in one mapped span, otherwise
 * a copy into a scratch buffer (reused, grown by doubling) assembled span by span. Only
 * `GuestMemory.translate` is used: a table outside the memory table is refused, never fetched
 * through the MEM_READ fallback (a walk that waited for round trips would let the guest rewrite
 * the table meanwhile).
 */
export class IndirectTables {
  #scratch = new Uint8Array(256);

  /**
   * The table descriptor `d` of `desc32` (4 int32 words per descriptor) points at, as a `DataView`
   * of exactly its length (valid until the next `open` or memory table change). Guest errors go
   * through `sink` (the queue breaks).
   * @throws VirtqueueError `BAD_INDIRECT_LENGTH` (0, not a multiple of 16, over `maxEntries`),
   *   `ADDRESS_WRAP`, `INDIRECT_UNMAPPED`.
   */
  open(desc32: Int32Array, d: number, maxEntries: number, memory: GuestMemory, sink: GuestErrorSink): DataView {
    const w = d << 2;
    const len = (desc32[w + 2] as number) >>> 0;
    if (len === 0 || len % 16 !== 0 || len / 16 > maxEntries) {
      throw guestFault(
        sink,
        "BAD_INDIRECT_LENGTH",
        `descriptor ${d}: indirect table length ${len} is 0, not a multiple of 16 or over ${maxEntries} entries`,
        d,
        maxEntries * 16,
        len,
      );
    }
    const alo = (desc32[w] as number) >>> 0;
    const ahi = (desc32[w + 1] as number) >>> 0;
    if (ahi === 0xffffffff && alo + len > TWO32) throw guestFault(sink, "ADDRESS_WRAP", `descriptor ${d}: indirect table wraps past 2^64`, d);
    const addr = (BigInt(ahi) << 32n) | BigInt(alo);
    const table = this.#read(memory, addr, len);
    if (typeof table === "number")
      throw guestFault(sink, "INDIRECT_UNMAPPED", `indirect table 0x${addr.toString(16)} of descriptor ${d} is not mapped at +${table}`, d, len, table);
    return table;
  }

  /** The table as a view, or the offset of its first unmapped byte. */
  #read(memory: GuestMemory, addr: bigint, len: number): DataView | number {
    const first = memory.translate(addr as GuestAddress, len);
    if (first.ok && first.span.bytes.length >= len) {
      const b = first.span.bytes;
      return new DataView(b.buffer, b.byteOffset, len);
    }
    if (this.#scratch.length < len) this.#scratch = new Uint8Array(Math.max(len, this.#scratch.length * 2));
    const s = this.#scratch;
    let done = 0;
    let r = first;
    // Each step copies >= 1 byte (an empty span counts as unmapped), so this ends within len steps.
    for (;;) {
      if (!r.ok || r.span.bytes.length === 0) return done;
      const take = Math.min(r.span.bytes.length, len - done);
      s.set(take === r.span.bytes.length ? r.span.bytes : r.span.bytes.subarray(0, take), done);
      done += take;
      if (done >= len) break;
      r = memory.translate((addr + BigInt(done)) as GuestAddress, len - done);
    }
    return new DataView(s.buffer, s.byteOffset, len);
  }
}

/**
 * Validates entry `i` of an indirect `table` (of descriptor `d`) and appends it to `batch` at word
 * `p` (growing the store when needed), device-writable when `writable`; adds its bytes to `totals`.
 * Returns the next word index.
 * @throws VirtqueueError through `sink`: `ZERO_LENGTH`, `ADDRESS_WRAP`, `BAD_ORDER` (when `strict`).
 */
export function appendTableEntry(
  table: DataView,
  i: number,
  writable: boolean,
  d: number,
  batch: ChainBatch,
  p: number,
  totals: ChainTotals,
  strict: boolean,
  sink: GuestErrorSink,
): number {
  const off = i * 16;
  const len = table.getUint32(off + 8, true);
  const lo = table.getUint32(off, true);
  const hi = table.getUint32(off + 4, true);
  if (len === 0) throw guestFault(sink, "ZERO_LENGTH", `indirect table of descriptor ${d}: entry ${i} has length 0`, d);
  if (hi === 0xffffffff && lo + len > TWO32) throw guestFault(sink, "ADDRESS_WRAP", `indirect table of descriptor ${d}: entry ${i} wraps past 2^64`, d);
  if (p >= batch.descs.length) batch.grow((p >>> 2) + 1);
  const flat = batch.descs;
  flat[p] = lo;
  flat[p + 1] = hi;
  flat[p + 2] = len;
  flat[p + 3] = writable ? DescFlag.WRITE : 0;
  if (writable) {
    totals.writable += len;
    totals.seenWrite = true;
  } else {
    if (totals.seenWrite && strict)
      throw guestFault(sink, "BAD_ORDER", `indirect table of descriptor ${d}: entry ${i} device-readable after device-writable`, d);
    totals.readable += len;
  }
  return p + 4;
}
