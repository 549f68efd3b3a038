/**
 * What both inflight region layouts (split-inflight.ts, packed-inflight.ts) share: the views of one
 * queue's bytes of the inflight area, and the check that a ring fits its region.
 *
 * @module
 */

import { VirtqueueError } from "./errors.js";

/** u8, u16 and u32 views of the first `need` bytes of a queue region. @internal */
export interface RegionViews {
  readonly u8: Uint8Array;
  readonly u16: Uint16Array;
  readonly u32: Uint32Array;
}

/**
 * Views of the first `need` bytes of `region` (borrowed: it must stay mapped while they are used).
 * @throws RangeError when `region` is shorter than `need` or not 8-byte aligned.
 * @internal
 */
export function regionViews(region: Uint8Array, need: number): RegionViews {
  if (region.byteLength < need) throw new RangeError(`inflight queue region of 0x${region.byteLength.toString(16)} bytes, 0x${need.toString(16)} needed`);
  if (region.byteOffset % 8 !== 0) throw new RangeError(`inflight queue region at offset 0x${region.byteOffset.toString(16)} is not 8-byte aligned`);
  return {
    u8: region.subarray(0, need),
    u16: new Uint16Array(region.buffer, region.byteOffset, need >>> 1),
    u32: new Uint32Array(region.buffer, region.byteOffset, need >>> 2),
  };
}

/**
 * Checks that a queue of `size` descriptors fits its inflight region of `descNum` entries (`undefined`: no region).
 * @throws VirtqueueError `BAD_QUEUE_SIZE` otherwise.
 * @internal
 */
export function checkRegionFits(descNum: number | undefined, size: number): void {
  if (descNum !== undefined && descNum < size)
    throw new VirtqueueError("BAD_QUEUE_SIZE", `queue size ${size} exceeds the inflight region's ${descNum} descriptors`, { expected: descNum, actual: size });
}
