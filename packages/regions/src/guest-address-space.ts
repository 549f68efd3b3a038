/**
 * The front-end's whole guest-physical address space: guest RAM plus every device's VIRTIO
 * Shared Memory Regions, as one {@link GuestMemory}.
 * @module
 */
import { rangesOverlap } from "./checked-math.js";
import { RegionError } from "./errors.js";
import type { GuestAddress } from "./guest-address.js";
import type { GuestMemory, TranslateResult } from "./guest-memory.js";
import type { GuestRam } from "./guest-ram.js";
import type { DeviceSharedMemory } from "./shmem-region.js";
import { findContaining, insertionIndex, readThrough, translateArgsMiss, writeThrough } from "./span-lookup.js";

interface Part {
  readonly start: bigint;
  readonly end: bigint;
  readonly len: bigint;
  readonly memory: GuestMemory;
  readonly owner: GuestRam | DeviceSharedMemory;
}

/**
 * Guest-physical space as the driver sees it. Lookups go to the RAM block or device window that
 * contains the address; inside a device window only live mappings translate (reserved pages give
 * an `unmapped` miss and are never touched), and `write` refuses read-only mappings before it
 * copies anything. This is what serves the vhostkit MEM_READ / MEM_WRITE extension (docs/shmem.md#extension-rules).
 *
 * Borrows the RAM and devices: it does not dispose them.
 */
export class GuestAddressSpace implements GuestMemory {
  readonly #parts: Part[] = [];

  /**
   * @param ram - guest RAM (its blocks are placed where the RAM says).
   * @param devices - devices whose shared memory windows join the space.
   * @throws RegionError `OVERLAP` when a device window overlaps RAM or another device.
   */
  constructor(ram: GuestRam, devices: readonly DeviceSharedMemory[] = []) {
    for (const b of ram.memoryTable())
      this.#insert({ start: b.guestPhysAddr, len: b.memorySize, end: b.guestPhysAddr + b.memorySize, memory: ram, owner: ram });
    for (const d of devices) this.addDevice(d);
  }

  #insert(p: Part): void {
    const i = insertionIndex(this.#parts, p.start);
    for (const n of [this.#parts[i - 1], this.#parts[i]]) {
      if (n !== undefined && rangesOverlap(n.start, n.len, p.start, p.len)) {
        throw new RegionError(
          "OVERLAP",
          `guest range 0x${p.start.toString(16)}+0x${p.len.toString(16)} overlaps 0x${n.start.toString(16)}+0x${n.len.toString(16)}`,
          { guestPhysAddr: p.start, len: p.len },
        );
      }
    }
    this.#parts.splice(i, 0, p);
  }

  /** Adds a device's shared memory window (no-op for a device without regions). @throws RegionError `OVERLAP`. */
  addDevice(device: DeviceSharedMemory): void {
    if (device.size === 0n) return;
    this.#insert({ start: device.guestPhysAddr, len: device.size, end: device.guestPhysAddr + device.size, memory: device, owner: device });
  }

  /** Removes a device's window (after its reset or disposal). Unknown devices are ignored. */
  removeDevice(device: DeviceSharedMemory): void {
    const i = this.#parts.findIndex((p) => p.owner === device);
    if (i >= 0) this.#parts.splice(i, 1);
  }

  /** Host view at guest-physical `addr`, clamped to the RAM block or live mapping; a miss otherwise. */
  translate(addr: GuestAddress, len: number): TranslateResult {
    const bad = translateArgsMiss(addr, len);
    if (bad !== undefined) return bad;
    const p = findContaining(this.#parts, addr);
    if (p === undefined) return { ok: false, miss: { kind: "unmapped", addr } };
    return p.memory.translate(addr, len);
  }

  /**
   * Copies guest memory at `addr` into `dst`; may cross RAM and mappings; checked first.
   * @throws RegionError `UNMAPPED`, `OVERFLOW`.
   */
  read(addr: GuestAddress, dst: Uint8Array): Promise<void> {
    return readThrough((a, l) => this.translate(a, l), addr, dst);
  }

  /**
   * Copies `src` to guest memory at `addr`; every byte must be mapped and writable, checked first.
   * @throws RegionError `UNMAPPED`, `READ_ONLY`, `OVERFLOW`.
   */
  write(addr: GuestAddress, src: Uint8Array): Promise<void> {
    return writeThrough((a, l) => this.translate(a, l), addr, src);
  }
}
