/**
 * Host views of ring memory, created once per start (docs/performance.md#memory-views: create views once).
 *
 * @module
 */
import type { GuestAddress, GuestMemory, UserAddress } from "@vhostkit/regions";
import { vqError } from "./errors.js";

/** Which address space ring addresses are in: guest-physical, or front-end virtual (SET_VRING_ADDR). */
export type RingAddressSpace = "guest" | "user";

/**
 * Translates `[addr, addr + len)` to one contiguous host view of exactly `len` bytes.
 * @throws VirtqueueError `RING_UNMAPPED` when the range is unmapped, split across regions, or (with
 *   `writable`) read-only; `MISALIGNED_RING` when the host view is not `align`-aligned.
 */
export function mapRing(memory: GuestMemory, space: RingAddressSpace, part: string, addr: bigint, len: number, align: number, writable: boolean): Uint8Array {
  let r;
  if (space === "user") {
    if (memory.translateUser === undefined)
      throw vqError("RING_UNMAPPED", `${part} ring 0x${addr.toString(16)}: memory cannot translate front-end addresses`, { actual: addr });
    r = memory.translateUser(addr as UserAddress, len);
  } else {
    r = memory.translate(addr as GuestAddress, len);
  }
  if (!r.ok)
    throw vqError("RING_UNMAPPED", `${part} ring 0x${addr.toString(16)} (${len} bytes) is not mapped (${r.miss.kind})`, { actual: addr, expected: len });
  const bytes = r.span.bytes;
  if (bytes.length < len) {
    throw vqError("RING_UNMAPPED", `${part} ring 0x${addr.toString(16)} crosses a region boundary after ${bytes.length} of ${len} bytes`, {
      actual: bytes.length,
      expected: len,
    });
  }
  if (writable && !r.span.writable) throw vqError("RING_UNMAPPED", `${part} ring 0x${addr.toString(16)} is read-only`, { actual: addr });
  if (bytes.byteOffset % align !== 0) {
    throw vqError("MISALIGNED_RING", `${part} ring host view offset ${bytes.byteOffset} not ${align}-byte aligned`, {
      actual: bytes.byteOffset,
      expected: align,
    });
  }
  return bytes.length === len ? bytes : bytes.subarray(0, len);
}

/** A `Uint16Array` over `bytes` (which must be 2-aligned and of even length, or is truncated). */
export function u16View(bytes: Uint8Array): Uint16Array {
  return new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >>> 1);
}

/** A `Uint32Array` over `bytes` (which must be 4-aligned; a trailing partial word is left out). */
export function u32View(bytes: Uint8Array): Uint32Array {
  return new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >>> 2);
}
