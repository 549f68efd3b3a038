/**
 * Host views of a split ring's three parts (docs/virtqueue.md#ring-layout), made once per start /
 * remap of a split queue (docs/performance.md#memory-views): the descriptor table as int32 words,
 * the avail ring as u16, the used ring as u16 and u32.
 * @module
 */
import type { GuestMemory } from "@vhostkit/regions";
import { RING_ALIGN, type RingAddresses, type SplitLayout } from "./layout.js";
import { mapRing, type RingAddressSpace, u16View, u32View } from "./ring-view.js";

/** The typed views a split queue reads and writes its rings through. */
export interface SplitRingViews {
  /** Descriptor table, four int32 words per descriptor (addr lo, addr hi, len, flags | next << 16). */
  readonly desc32: Int32Array;
  /** Avail ring: flags, idx, ring[size], used_event. */
  readonly avail16: Uint16Array;
  /** Used ring as u16: flags, idx, …, avail_event. */
  readonly used16: Uint16Array;
  /** Used ring as u32: the used elements (id, len) from word 1. */
  readonly used32: Uint32Array;
}

/** Views over no memory: what a stopped queue holds. */
export const UNMAPPED_SPLIT_RING: SplitRingViews = {
  desc32: new Int32Array(0),
  avail16: new Uint16Array(0),
  used16: new Uint16Array(0),
  used32: new Uint32Array(0),
};

/**
 * Maps the three parts of the split ring at `addresses` (of the sizes in `layout`) in `memory`,
 * one contiguous host view each; the used ring writable.
 * @throws VirtqueueError `RING_UNMAPPED`, `MISALIGNED_RING`.
 */
export function mapSplitRing(memory: GuestMemory, space: RingAddressSpace, addresses: RingAddresses, layout: SplitLayout): SplitRingViews {
  const d = mapRing(memory, space, "descriptor", addresses.desc, layout.descBytes, 4, false);
  const a = mapRing(memory, space, "avail", addresses.avail, layout.availBytes, RING_ALIGN.avail, false);
  const u = mapRing(memory, space, "used", addresses.used, layout.usedBytes, RING_ALIGN.used, true);
  return { desc32: new Int32Array(d.buffer, d.byteOffset, d.byteLength >>> 2), avail16: u16View(a), used16: u16View(u), used32: u32View(u) };
}
