/**
 * Packed virtqueue layout (VIRTIO 1.2 §2.8; docs/virtqueue.md#packed-rings): descriptor and event
 * suppression formats, flag bits, sizes, alignments and the event-index rule with wrap counters.
 *
 * A packed ring of queue size q is three areas, the addresses SET_VRING_ADDR carries in its
 * `desc` / `avail` / `used` fields:
 *
 * | area | written by | alignment | bytes |
 * |---|---|---:|---:|
 * | descriptor ring (`desc`) | both | 16 | 16·q |
 * | driver event suppression (`avail`, the driver area) | driver | 4 | 4 |
 * | device event suppression (`used`, the device area) | device | 4 | 4 |
 *
 * Descriptor: 0:u64 addr, 8:u32 len, 12:u16 buffer id, 14:u16 flags. Event suppression structure:
 * 0:u16 `off_wrap` (bits 0–14 descriptor offset, bit 15 wrap counter), 2:u16 flags (bits 0–1).
 * All little-endian (the host check lives in `layout.ts`).
 *
 * @module
 */
import { vqError } from "./errors.js";
import { MAX_QUEUE_SIZE, needEvent } from "./layout.js";
import type { RingAddresses } from "./layout.js";

/** Packed descriptor flag bits (`VIRTQ_DESC_F_*`, VIRTIO 1.2 §2.8). */
export const PackedDescFlag = {
  /** The list continues in the next ring slot (reserved in used descriptors). */
  NEXT: 1,
  /** Device-writable element; in a used descriptor: the device wrote `len` bytes. */
  WRITE: 2,
  /** The element is a table of descriptors (VIRTIO_F_INDIRECT_DESC); only as a list of one. */
  INDIRECT: 4,
  /** Bit 7: equals the driver's wrap counter when made available, the device's when used. */
  AVAIL: 0x80,
  /** Bit 15: the inverse of the driver's wrap counter when made available, the device's when used. */
  USED: 0x8000,
} as const;

/** Values of the event suppression `flags` field (`RING_EVENT_FLAGS_*`); 3 is reserved. */
export const RingEventFlag = {
  /** Notify on every event. */
  ENABLE: 0,
  /** Do not notify. */
  DISABLE: 1,
  /** Notify when the descriptor at `off_wrap` is made available / used (needs VIRTIO_F_EVENT_IDX). */
  DESC: 2,
} as const;

/** Byte sizes of the three areas of a packed ring. */
export interface PackedLayout {
  /** Queue size: any integer in 1..32768 (need not be a power of two). */
  readonly size: number;
  /** Descriptor ring bytes (16·size); alignment 16. */
  readonly descBytes: number;
  /** Driver event suppression structure bytes (4); alignment 4. */
  readonly driverEventBytes: number;
  /** Device event suppression structure bytes (4); alignment 4. */
  readonly deviceEventBytes: number;
}

/**
 * Required alignments of the packed ring areas, keyed as in {@link RingAddresses}: `desc` the
 * descriptor ring (16), `avail` the driver event suppression area (4), `used` the device event
 * suppression area (4).
 */
export const PACKED_RING_ALIGN = { desc: 16, avail: 4, used: 4 } as const;

const AREA_NAME = { desc: "descriptor ring", avail: "driver event suppression area", used: "device event suppression area" } as const;

/** True when `size` is a valid packed queue size: an integer in 1..32768 (powers of two not required). */
export function isValidPackedQueueSize(size: number): boolean {
  return Number.isInteger(size) && size >= 1 && size <= MAX_QUEUE_SIZE;
}

/**
 * Sizes of a packed ring with `size` descriptors.
 * @throws VirtqueueError `BAD_QUEUE_SIZE` unless `size` is an integer in 1..32768.
 */
export function packedLayout(size: number): PackedLayout {
  if (!isValidPackedQueueSize(size)) {
    throw vqError("BAD_QUEUE_SIZE", `packed queue size ${size} is not an integer in 1..32768`, { actual: size, expected: "1..32768" });
  }
  return { size, descBytes: 16 * size, driverEventBytes: 4, deviceEventBytes: 4 };
}

/**
 * Checks the alignment of packed ring addresses (SET_VRING_ADDR's desc, avail = driver area,
 * used = device area).
 * @throws VirtqueueError `MISALIGNED_RING` naming the misaligned area and its address in hex.
 */
export function checkPackedRingAlignment(addrs: RingAddresses): void {
  for (const part of ["desc", "avail", "used"] as const) {
    const a = addrs[part];
    const align = PACKED_RING_ALIGN[part];
    if (a % BigInt(align) !== 0n) {
      throw vqError("MISALIGNED_RING", `${AREA_NAME[part]} 0x${a.toString(16)} not ${align}-byte aligned`, { actual: a, expected: align });
    }
  }
}

/**
 * The event-index rule of a packed ring: after advancing from ring offset `oldIdx` to `newIdx`
 * (`newIdx` in 0..size-1 with wrap counter `wrap`; `oldIdx` = `newIdx` minus the descriptors just
 * made available / used, so it is negative when the ring end was passed), true when the event
 * offset of `offWrap` lies in that window. An event whose wrap bit differs from `wrap` belongs to
 * the previous lap and counts as `offset - size` (as Linux `virtqueue_kick_prepare_packed`).
 */
export function packedNeedEvent(offWrap: number, wrap: boolean, size: number, newIdx: number, oldIdx: number): boolean {
  let event = offWrap & 0x7fff;
  if (((offWrap & 0x8000) !== 0) !== wrap) event -= size;
  return needEvent(event & 0xffff, newIdx, oldIdx & 0xffff);
}
