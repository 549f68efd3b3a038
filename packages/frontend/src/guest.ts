/**
 * The front-end's guest: one guest-physical address space (RAM + every device's VIRTIO Shared
 * Memory Regions) shared by several devices, each with its own back-end.
 * @module
 */
import { guestAddress, GuestAddressSpace, GuestRam, SYNTHETIC_USER_BASE, type GuestAddress, type ShmemMapping, type ShmemMappingEvent } from "@vhostkit/regions";
import type { MemoryRegion } from "@vhostkit/wire";
import type { RetryPolicy } from "@vhostkit/transport";
import { Device, type DeviceOptions } from "./device.js";
import { FrontendError } from "./errors.js";
import { GuestAllocator } from "./guest-allocator.js";

/** Options of a {@link Guest}. */
export interface GuestOptions {
  /** Guest RAM in bytes, a page multiple (default 64 MiB; memfd pages are allocated on first touch). */
  readonly ramSize?: bigint;
  /** Guest-physical address where device shared memory windows start (default 4 GiB). */
  readonly shmemBase?: bigint;
  /**
   * Eager propagation (SHMEM.md §8.2, default true): every live SHMEM mapping of any device is added
   * to every started device's memory table (ADD_MEM_REG / REM_MEM_REG, or SET_MEM_TABLE), after the
   * reply to the back-end that asked for it, so a buffer in one device's window can be handed to another.
   */
  readonly propagateSharedMemory?: boolean;
}

/** The memory-table entry of a SHMEM mapping: GPA = window + offset, synthetic user address, `mmap_offset` = `fd_offset`. @internal */
export function mappingRegion(m: ShmemMapping): MemoryRegion {
  return { guestPhysAddr: m.guestPhysAddr, memorySize: m.len, userAddr: SYNTHETIC_USER_BASE + m.guestPhysAddr, mmapOffset: m.fdOffset };
}

/** Alignment of each device's shared memory window in guest-physical space (1 GiB, like a BAR). */
const WINDOW_ALIGN = 1n << 30n;

/**
 * A guest without a VM: memfd-backed RAM at guest-physical 0 with synthetic user addresses (no
 * host virtual address is ever sent), an allocator for rings and buffers, and a
 * {@link GuestAddressSpace} joining RAM and each device's shared memory windows (placed one after
 * another from `shmemBase`, 1 GiB aligned). Devices fail independently.
 */
export class Guest {
  /** Guest RAM (one block at GPA 0). */
  readonly ram: GuestRam;
  /** The whole guest-physical space: RAM plus device windows. */
  readonly space: GuestAddressSpace;
  /** Allocator of rings and request buffers in RAM. */
  readonly allocator: GuestAllocator;
  readonly #devices = new Set<Device>();
  #nextWindow: bigint;
  #closed = false;
  /** Whether SHMEM mappings are propagated to every started device (see {@link GuestOptions}). */
  readonly propagateSharedMemory: boolean;

  /** @throws RegionError when the RAM cannot be created. */
  constructor(options: GuestOptions = {}) {
    const size = options.ramSize ?? 64n << 20n;
    this.ram = new GuestRam({ blocks: [{ guestPhysAddr: 0n, size }] });
    this.space = new GuestAddressSpace(this.ram);
    this.allocator = new GuestAllocator(0n, size);
    this.propagateSharedMemory = options.propagateSharedMemory ?? true;
    this.#nextWindow = options.shmemBase ?? 1n << 32n;
    if (this.#nextWindow < size) this.#nextWindow = (size + WINDOW_ALIGN - 1n) & ~(WINDOW_ALIGN - 1n);
  }

  /** The open devices. */
  get devices(): readonly Device[] {
    return [...this.#devices];
  }

  /**
   * Connects to a back-end and negotiates (PROTOCOL.md §4.2 steps 1–4, including the back-end
   * channel and GET_SHMEM_CONFIG); the device's shared memory joins {@link Guest.space}.
   * @throws FrontendError as {@link Device}; nothing stays open when it throws.
   */
  async addDevice(options: DeviceOptions): Promise<Device> {
    if (this.#closed) throw new FrontendError("closed", "guest closed");
    const d = await Device.open(this, options);
    this.#devices.add(d);
    return d;
  }

  /**
   * Reconnects a device whose back-end went away (or any device opened with `socketPath`): closes
   * it (its mappings are dropped, the other devices' tables lose them), then connects again with the
   * same options and redoes the whole negotiation. Drivers must be attached again to the returned
   * device (a new back-end starts with fresh rings).
   * @param retry - connect retries while the back-end restarts (default: the device's own policy).
   * @throws FrontendError `bad-argument` for a device opened on an `endpoint`, or as {@link Guest.addDevice}.
   */
  async reconnect(device: Device, retry?: RetryPolicy): Promise<Device> {
    const { endpoint, ...options } = device.options;
    if (endpoint !== undefined || options.socketPath === undefined) throw new FrontendError("bad-argument", "only a device opened with socketPath can reconnect");
    await device.close();
    return this.addDevice({ ...options, ...(retry === undefined ? {} : { retry }) });
  }

  /** Reserves guest-physical space for a device window of `size` bytes. @internal */
  placeShmem(size: bigint): GuestAddress {
    const base = this.#nextWindow;
    this.#nextWindow = (base + size + WINDOW_ALIGN - 1n) & ~(WINDOW_ALIGN - 1n);
    return guestAddress(base);
  }

  /** RAM blocks as memory-table regions, with their memfds (borrowed). @internal */
  ramRegions(): { readonly regions: MemoryRegion[]; readonly fds: number[] } {
    const blocks = this.ram.memoryTable();
    return {
      regions: blocks.map((b) => ({ guestPhysAddr: b.guestPhysAddr, memorySize: b.memorySize, userAddr: b.userspaceAddr, mmapOffset: b.mmapOffset })),
      fds: blocks.map((b) => b.fd),
    };
  }

  /** Every live SHMEM mapping of every device. @internal */
  liveMappings(): ShmemMapping[] {
    return [...this.#devices].flatMap((d) => d.sharedMemory?.mappings() ?? []);
  }

  /**
   * The live mappings that may go into `device`'s memory table: every writable one, and its own
   * read-only ones (a memory-table entry cannot be read-only, SHMEM.md §8.2). @internal
   */
  propagatableTo(device: Device): ShmemMapping[] {
    return [...this.#devices].flatMap((d) => (d.sharedMemory?.mappings() ?? []).filter((m) => m.writable || d === device));
  }

  /**
   * Whether a new shared-memory mapping of `mapper` can reach every other device (policy per
   * device, SHMEM.md §8.2): `undefined` when it can, else the reason, naming the device. The
   * back-end request handler refuses the SHMEM_MAP with that reason.
   * @internal
   */
  admitMapping(mapper: Device, writable: boolean): string | undefined {
    let i = 0;
    for (const d of this.#devices) {
      i++;
      if (d === mapper) continue;
      const why = d.reachRefusal(writable);
      if (why !== undefined) return `device ${i} could not reach the mapping: ${why}`;
    }
    return undefined;
  }

  /**
   * Fans mapping changes of `source` out to every device (each decides whether its table needs
   * them; read-only mappings reach only `source` itself). Their messages wait for `after`. @internal
   */
  propagate(events: readonly ShmemMappingEvent[], source: Device, after?: Promise<void>): void {
    if (!this.propagateSharedMemory || events.length === 0) return;
    for (const d of this.#devices) d.propagate(d === source ? events : events.filter((e) => e.mapping.writable), after);
  }

  /** Forgets a closed device. @internal */
  detach(device: Device): void {
    this.#devices.delete(device);
  }

  /** Closes every device, then unmaps and closes guest RAM. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const d of [...this.#devices]) await d.close();
    this.ram.dispose();
  }
}
