/**
 * The vring base of a packed ring: where the device resumes (SET_VRING_BASE) and where it stopped
 * (GET_VRING_BASE). The vhost-user `num` carries the next avail offset in bits 0–14, the avail
 * wrap counter in bit 15, the next used offset in bits 16–30 and the used wrap counter in bit 31
 * (docs/protocol.md#vrings); `@vhostkit/wire`'s {@link PackedVringBase} is the decoded form.
 *
 * @module
 */
import { decodePackedVringBase, encodePackedVringBase } from "@vhostkit/wire";
import type { PackedVringBase } from "@vhostkit/wire";

/**
 * SET_VRING_BASE value of a fresh packed ring: both offsets 0, both wrap counters 1
 * (`0x8000_8000`, what QEMU sends for a ring that never ran). A zeroed ring read with wrap
 * counter 0 would look used, so 0 is not a fresh packed base.
 */
export const FRESH_PACKED_VRING_BASE = 0x8000_8000;

/**
 * Number of ring descriptors between the used and the avail position of `base`: descriptors the
 * device took and has not marked used yet. In 0..size for a consistent base, otherwise negative
 * or above `size`.
 */
export function packedInFlight(base: PackedVringBase, size: number): number {
  return base.availIdx - base.usedIdx + (base.availWrap === base.usedWrap ? 0 : size);
}

/**
 * Decodes and checks a packed vring base for a ring of `size` descriptors: a SET_VRING_BASE `num`
 * (u32) or an already decoded {@link PackedVringBase}.
 * @throws RangeError when `num` is not a u32, an offset is not below `size`, or the used position
 *   is ahead of the avail position (or more than a ring behind it).
 */
export function toPackedVringBase(base: number | PackedVringBase, size: number): PackedVringBase {
  let b: PackedVringBase;
  if (typeof base === "number") {
    if (!Number.isInteger(base) || base < 0 || base > 0xffff_ffff) throw new RangeError(`packed vring base ${base} is not a u32`);
    b = decodePackedVringBase(base);
  } else {
    b = base;
  }
  for (const i of [b.availIdx, b.usedIdx]) {
    if (!Number.isInteger(i) || i < 0 || i >= size) throw new RangeError(`packed vring base offset ${i} not below queue size ${size}`);
  }
  const inFlight = packedInFlight(b, size);
  if (inFlight < 0 || inFlight > size) {
    throw new RangeError(
      `packed vring base: used position ${b.usedIdx}/${+b.usedWrap} is not within one ring behind avail position ${b.availIdx}/${+b.availWrap}`,
    );
  }
  return { availIdx: b.availIdx, availWrap: b.availWrap, usedIdx: b.usedIdx, usedWrap: b.usedWrap };
}

/** The GET_VRING_BASE `num` (u32) of a packed vring base (offsets must be 15-bit). */
export function packedVringBaseNum(base: PackedVringBase): number {
  return encodePackedVringBase(base, "GET_VRING_BASE");
}
