/**
 * Set-up for the packed-ring tests: area addresses, a started device queue and a driver over the
 * multi-region test memory of `ring-fixture.ts`, and writers for hand-laid descriptors.
 */
import { ChainBatch, PackedDescFlag, PackedQueue } from "../../src/index.js";
import type { PackedQueueOptions, RingAddresses } from "../../src/index.js";
import { PackedDriver } from "../../src/driver/index.js";
import type { ArrayGuestMemory } from "../../src/testing/index.js";
import { RING_BASE, makeMemory, putDesc } from "./ring-fixture.js";

/** Flags of a descriptor made available in a lap with wrap counter 1 / 0, and of a used one. */
export const AVAIL_1 = PackedDescFlag.AVAIL;
/** Available in a lap with wrap counter 0. */
export const AVAIL_0 = PackedDescFlag.USED;
/** Used in a lap with wrap counter 1. */
export const USED_1 = PackedDescFlag.AVAIL | PackedDescFlag.USED;

/** Packed area addresses for a queue of `size`: descriptor ring, then the driver and device event structures. */
export function packedAddresses(size: number): RingAddresses {
  const desc = RING_BASE;
  return { desc, avail: desc + BigInt(16 * size), used: desc + BigInt(16 * size + 4) };
}

/** Options of {@link packedPair}. */
export interface PackedPairOptions {
  readonly size?: number;
  readonly eventIdx?: boolean;
  readonly indirect?: boolean;
  readonly memory?: ArrayGuestMemory;
  /** Start position of both sides: offset | wrap << 15 (default 0x8000). */
  readonly start?: number;
  readonly queue?: Partial<PackedQueueOptions>;
}

/** A started packed device queue and a driver over the same memory, at the same position. */
export function packedPair(o: PackedPairOptions = {}) {
  const size = o.size ?? 8;
  const memory = o.memory ?? makeMemory(Math.max(size, 8));
  const addresses = packedAddresses(size);
  const flags = { eventIdx: o.eventIdx ?? false, indirect: o.indirect ?? false };
  const start = o.start ?? 0x8000;
  const driver = new PackedDriver<string>({ size, memory, addresses, start, ...flags });
  const queue = new PackedQueue({ size, memory, addresses, ...flags, ...o.queue });
  queue.start((start | (start << 16)) >>> 0);
  const batch = new ChainBatch(size);
  return { size, memory, addresses, driver, queue, batch };
}

/**
 * Writes packed descriptor `i` by hand: 0 addr, 8 len, 12 id, 14 flags — the split layout's
 * offsets with the id where split has its flags and the flags where split has `next`.
 */
export function putPacked(dv: DataView, descBase: number, i: number, addr: bigint, len: number, id: number, flags: number): void {
  putDesc(dv, descBase, i, addr, len, id, flags);
}

/** Reads packed descriptor `i` back. */
export function getPacked(dv: DataView, descBase: number, i: number) {
  const o = descBase + 16 * i;
  return { addr: dv.getBigUint64(o, true), len: dv.getUint32(o + 8, true), id: dv.getUint16(o + 12, true), flags: dv.getUint16(o + 14, true) };
}
