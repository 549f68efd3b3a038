/**
 * The rules of a vring that depend on its layout (docs/virtqueue.md#packed-rings): split, or packed
 * when the driver acknowledged VIRTIO_F_RING_PACKED. The ring runner applies them when the
 * front-end sets a ring up (SET_VRING_NUM / ADDR / BASE) and again when the ring starts, since
 * SET_FEATURES may change the layout in between.
 * @module
 */
import type { GuestMemory, MemoryTable } from "@vhostkit/regions";
import {
  FRESH_PACKED_VRING_BASE,
  isValidPackedQueueSize,
  isValidQueueSize,
  isVirtqueueError,
  PackedQueue,
  type PackedInflight,
  toPackedVringBase,
  type DeviceQueueOptions,
  type RingAddresses,
} from "@vhostkit/virtqueue";
import { decodeSplitVringBase, VirtioFeature } from "@vhostkit/wire";
import { protocolError } from "./errors.js";

/** True when `features` (acknowledged; `undefined`: none yet) select the packed layout. */
export function isPackedLayout(features: bigint | undefined): boolean {
  return features !== undefined && (features & VirtioFeature.RING_PACKED) !== 0n;
}

/**
 * SET_VRING_NUM: no larger than `max`; a power of two for a split ring, any size from 1 for a packed one.
 * @throws BackendError `PROTOCOL`.
 */
export function checkRingSize(request: string, size: number, max: number, packed: boolean): void {
  if (packed ? !isValidPackedQueueSize(size) || size > max : !isValidQueueSize(size) || size > max) {
    throw protocolError(
      request,
      packed ? `queue size ${size} is not in 1..${max} (packed ring)` : `queue size ${size} is not a power of two <= ${max} (split ring)`,
      { actual: size, expected: max },
    );
  }
}

/**
 * SET_VRING_ADDR alignments: split — descriptor table 16, available ring 2, used ring 4 bytes;
 * packed — descriptor ring 16, driver and device event suppression areas 4 bytes each.
 * @throws BackendError `PROTOCOL`.
 */
export function checkRingAlignment(request: string, a: RingAddresses, packed: boolean): void {
  if (a.desc % 16n !== 0n || a.avail % (packed ? 4n : 2n) !== 0n || a.used % 4n !== 0n) {
    throw protocolError(
      request,
      `misaligned ${packed ? "packed " : ""}ring: desc 0x${a.desc.toString(16)} avail 0x${a.avail.toString(16)} used 0x${a.used.toString(16)}`,
    );
  }
}

/**
 * SET_VRING_BASE's `num` as the ring keeps it. Split: the next avail index (bits 0–15). Packed: the
 * whole u32 (avail offset and wrap counter, used offset and wrap counter; docs/protocol.md#vrings),
 * checked against `size` when it is known (not 0).
 * @throws WireError `BAD_VALUE` (split: bits 16–31 set); BackendError `PROTOCOL` (packed: a base
 *   that does not fit the queue size).
 */
export function ringBase(request: string, num: number, size: number, packed: boolean): number {
  if (!packed) return decodeSplitVringBase(num).nextAvailIdx;
  if (size === 0) return num;
  try {
    toPackedVringBase(num, size);
  } catch (err) {
    throw protocolError(request, `packed vring base 0x${num.toString(16)}: ${err instanceof Error ? err.message : String(err)}`, { actual: num });
  }
  return num;
}

/** The base of a ring that never ran (no SET_VRING_BASE since set-up or RESET_DEVICE): 0, or `FRESH_PACKED_VRING_BASE`. */
export function freshRingBase(packed: boolean): number {
  return packed ? FRESH_PACKED_VRING_BASE : 0;
}

/** What a ring is started with, whatever its layout. */
export interface RingQueueOptions extends DeviceQueueOptions {
  /** The ring's region of the inflight area (packed layout), when the front-end handed one over. */
  readonly inflight?: PackedInflight;
  /** SET_VRING_NUM. */
  readonly size: number;
  /** SET_VRING_ADDR (descriptor ring, driver area, device area for a packed ring). */
  readonly addresses: RingAddresses;
  /** Guest memory the ring lives in. */
  readonly memory: GuestMemory;
}

/**
 * The device side of a packed ring (recorded in the inflight area when `options.inflight` is given).
 * @throws BackendError `PROTOCOL` when size or addresses do not suit a packed ring.
 */
export function packedQueue(request: string, index: number, options: RingQueueOptions): PackedQueue {
  try {
    return new PackedQueue(options);
  } catch (err) {
    if (isVirtqueueError(err)) throw protocolError(request, `vring ${index}: ${err.message}`);
    throw err;
  }
}

/**
 * The guest-physical address of front-end virtual address `userAddr` through `memory`'s regions
 * (ring addresses come as user addresses; the dirty log wants guest-physical ones), or `undefined`
 * when no region holds it.
 */
export function guestAddressOfUser(memory: Pick<MemoryTable, "regions">, userAddr: bigint): bigint | undefined {
  for (const r of memory.regions()) {
    const off = userAddr - r.userspaceAddr;
    if (off >= 0n && off < r.memorySize) return r.guestPhysAddr + off;
  }
  return undefined;
}
