/**
 * Shared set-up for the virtqueue tests: a multi-region in-memory guest, ring addresses, and a
 * driver/device pair over them.
 */
import { ChainBatch, SplitQueue } from "../../src/index.js";
import type { DeviceQueue, RingAddresses } from "../../src/index.js";
import { SplitDriver } from "../../src/driver/index.js";
import { ArrayGuestMemory } from "../../src/testing/index.js";

/** Guest-physical layout of the test memory. */
export const RING_BASE = 0x0n;
/** Buffers region A: [0x100000, 0x108000). */
export const BUF_A = 0x100000n;
/** Buffers region B, directly after A (a buffer crossing 0x108000 spans two host buffers). */
export const BUF_B = 0x108000n;
/** A region translate() does not know (served by read/write only: the fallback stand-in). */
export const REMOTE = 0x200000n;
/** A read-only region. */
export const READ_ONLY = 0x300000n;
/** An address no region covers. */
export const HOLE = 0x400000n;

/** Ring addresses for a queue of `size` inside the ring region. */
export function ringAddresses(size: number): RingAddresses {
  const desc = RING_BASE;
  const avail = desc + BigInt(16 * size);
  const used = (avail + BigInt(6 + 2 * size) + 3n) & ~3n;
  return { desc, avail, used };
}

/** Creates the test memory with a ring region big enough for `size`. */
export function makeMemory(size = 256): ArrayGuestMemory {
  const ringBytes = 16 * size + 6 + 2 * size + 4 + 6 + 8 * size;
  return new ArrayGuestMemory([
    { guestAddr: RING_BASE, size: Math.max(0x1000, ringBytes + 16), userAddr: 0x7f00_0000_0000n },
    { guestAddr: BUF_A, size: 0x8000 },
    { guestAddr: BUF_B, size: 0x8000 },
    { guestAddr: REMOTE, size: 0x1000, mapped: false },
    { guestAddr: READ_ONLY, size: 0x1000, writable: false },
  ]);
}

/** Options of {@link pair}. */
export interface PairOptions {
  readonly size?: number;
  readonly eventIdx?: boolean;
  readonly indirect?: boolean;
  readonly memory?: ArrayGuestMemory;
}

/** A started device queue and a driver over the same memory. */
export function pair(o: PairOptions = {}) {
  const size = o.size ?? 8;
  const memory = o.memory ?? makeMemory(size);
  const addresses = ringAddresses(size);
  const flags = { eventIdx: o.eventIdx ?? false, indirect: o.indirect ?? false };
  const driver = new SplitDriver<string>({ size, memory, addresses, ...flags });
  const queue = new SplitQueue({ size, memory, addresses, ...flags });
  queue.start(0);
  const batch = new ChainBatch(size);
  return { size, memory, addresses, driver, queue, batch };
}

/** Little-endian DataView over the ring region of `memory`. */
export function ringView(memory: ArrayGuestMemory): DataView {
  const b = memory.regions[0]!.bytes;
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

/** Writes descriptor `i` by hand at the offsets of docs/virtqueue.md#descriptors-and-chains. */
export function putDesc(dv: DataView, descBase: number, i: number, addr: bigint, len: number, flags: number, next: number): void {
  const o = descBase + 16 * i;
  dv.setBigUint64(o, addr, true);
  dv.setUint32(o + 8, len, true);
  dv.setUint16(o + 12, flags, true);
  dv.setUint16(o + 14, next, true);
}

/** Collects every segment of chain `i` as plain objects. */
export function segmentsOf(queue: DeviceQueue, batch: ChainBatch, i: number) {
  const out: { kind: string; addr: bigint; len: number; writable: boolean; bytes: Uint8Array }[] = [];
  const c = queue.segments(batch, i);
  while (c.next()) out.push({ kind: c.kind, addr: c.addr, len: c.len, writable: c.writable, bytes: c.bytes });
  return out;
}
