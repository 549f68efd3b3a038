/**
 * Split virtqueue layout (docs/virtqueue.md#ring-layout; VIRTIO 1.2 §2.7): sizes, offsets, flag bits and
 * alignment rules. All ring structures are little-endian; this module asserts a little-endian host
 * once at load time so the rest of the package can use typed arrays directly.
 *
 * @module
 */
import { vqError } from "./errors.js";

/** Largest queue size of a split ring (a u16 idx must tell full from empty). */
export const MAX_QUEUE_SIZE = 32768;

/** Bytes per descriptor: 0:u64 addr, 8:u32 len, 12:u16 flags, 14:u16 next. */
export const DESC_SIZE = 16;

/** Descriptor flag bits (`VIRTQ_DESC_F_*`). */
export const DescFlag = {
  /** The chain continues at `next`. */
  NEXT: 1,
  /** Device-writable buffer (otherwise device-readable). */
  WRITE: 2,
  /** The buffer is a table of descriptors (VIRTIO_F_INDIRECT_DESC). */
  INDIRECT: 4,
} as const;

/** `avail.flags` bit: the driver asks the device not to interrupt (hint; ignored under EVENT_IDX). */
export const AVAIL_F_NO_INTERRUPT = 1;
/** `used.flags` bit: the device asks the driver not to kick (hint; ignored under EVENT_IDX). */
export const USED_F_NO_NOTIFY = 1;

/** VIRTIO feature bit numbers the ring code cares about (docs/protocol.md#virtio-feature-bits). */
export const RingFeatureBit = {
  /** VIRTIO_F_INDIRECT_DESC. */
  INDIRECT_DESC: 28,
  /** VIRTIO_F_EVENT_IDX. */
  EVENT_IDX: 29,
  /** VIRTIO_F_RING_PACKED: the packed layout ({@link PackedQueue}) instead of the split one. */
  RING_PACKED: 34,
} as const;

/** Byte sizes and required alignments of the three parts of a split ring of a given size. */
export interface SplitLayout {
  /** Queue size (number of descriptors), a power of two in 1..32768. */
  readonly size: number;
  /** Descriptor table size in bytes (16·size); alignment 16. */
  readonly descBytes: number;
  /** Available ring size in bytes including `used_event` (6 + 2·size); alignment 2. */
  readonly availBytes: number;
  /** Used ring size in bytes including `avail_event` (6 + 8·size); alignment 4. */
  readonly usedBytes: number;
}

/** Required alignments in bytes: descriptor table 16, available ring 2, used ring 4. */
export const RING_ALIGN = { desc: 16, avail: 2, used: 4 } as const;

/** True when `size` is a valid split queue size: a power of two in 1..32768. */
export function isValidQueueSize(size: number): boolean {
  return Number.isInteger(size) && size >= 1 && size <= MAX_QUEUE_SIZE && (size & (size - 1)) === 0;
}

/**
 * Sizes of a split ring with `size` descriptors.
 * @throws VirtqueueError `BAD_QUEUE_SIZE` unless `size` is a power of two in 1..32768.
 */
export function splitLayout(size: number): SplitLayout {
  if (!isValidQueueSize(size)) {
    throw vqError("BAD_QUEUE_SIZE", `queue size ${size} is not a power of two in 1..32768`, { actual: size, expected: "power of two <= 32768" });
  }
  return { size, descBytes: DESC_SIZE * size, availBytes: 6 + 2 * size, usedBytes: 6 + 8 * size };
}

/** Guest addresses (or front-end virtual addresses) of the three ring parts, as in SET_VRING_ADDR. */
export interface RingAddresses {
  /** Descriptor table address; must be 16-byte aligned. */
  readonly desc: bigint;
  /** Available (driver) ring address; must be 2-byte aligned. */
  readonly avail: bigint;
  /** Used (device) ring address; must be 4-byte aligned. */
  readonly used: bigint;
}

/**
 * Checks the alignment of ring addresses (docs/virtqueue.md#ring-layout).
 * @throws VirtqueueError `MISALIGNED_RING` naming the misaligned part and its address in hex.
 */
export function checkRingAlignment(addrs: RingAddresses): void {
  for (const part of ["desc", "avail", "used"] as const) {
    const a = addrs[part];
    if (a % BigInt(RING_ALIGN[part]) !== 0n) {
      throw vqError("MISALIGNED_RING", `${part} ring 0x${a.toString(16)} not ${RING_ALIGN[part]}-byte aligned`, {
        actual: a,
        expected: RING_ALIGN[part],
      });
    }
  }
}

/** `vring_need_event` (docs/virtqueue.md#notification-suppression): true when `eventIdx` lies in the window (old, new]. All u16. */
export function needEvent(eventIdx: number, newIdx: number, oldIdx: number): boolean {
  return ((newIdx - eventIdx - 1) & 0xffff) < ((newIdx - oldIdx) & 0xffff);
}

// Ring structures are little-endian; typed arrays use host order. Check once, at load time.
if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
  throw vqError("UNSUPPORTED_HOST", "virtqueue: big-endian hosts are not supported (typed arrays would read ring fields byte-swapped)");
}
