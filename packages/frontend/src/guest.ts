/**
 * The front-end's guest: one guest-physical address space (RAM + every device's VIRTIO Shared
 * Memory Regions) shared by several devices, each with its own back-end.
 * @module
 */
import { guestAddress, GuestAddressSpace, GuestRam, type GuestAddress, type ShmemMapping } from "@vhostkit/regions";
import type { MemoryRegion } from "@vhostkit/wire";
import type { RetryPolicy } from "@vhostkit/transport";
import { Device, type DeviceHost } from "./device.js";
import type { DeviceOptions } from "./device-options.js";
import { FrontendError } from "./errors.js";
import { GuestAllocator } from "./guest-allocator.js";
import { GuestSharedMemory } from "./guest-shared-memory.js";
import { ramTable } from "./memory-table-mirror.js";
import { warmUpFrontend } from "./warm-up.js";

/** Options of a {@link Guest}. */
export interface GuestOptions {
  /** Guest RAM in bytes, a page multiple (default 64 MiB; memfd pages are allocated on first touch). */
  readonly ramSize?: bigint;
  /** Guest-physical address where device shared memory windows start (default 4 GiB). */
  readonly shmemBase?: bigint;
  /**
   * Eager propagation (docs/shmem.md#eager-propagation, default true): every live SHMEM mapping of any device is added
   * to every started device's memory table (ADD_MEM_REG / REM_MEM_REG, or SET_MEM_TABLE), after the
   * reply to the back-end that asked for it, so a buffer in one device's window can be handed to another.
   */
  readonly propagateSharedMemory?: boolean;
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
  /** What its devices get of this guest. */
  readonly #host: DeviceHost;
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
    this.#host = {
      ram: this.ram,
      space: this.space,
      allocator: this.allocator,
      sharedMemory: new GuestSharedMemory(this.propagateSharedMemory),
      placeShmem: (windowSize) => this.#placeShmem(windowSize),
      detach: (device) => void this.#devices.delete(device),
    };
  }

  /** The open devices. */
  get devices(): readonly Device[] {
    return [...this.#devices];
  }

  /**
   * Connects to a back-end and negotiates (docs/protocol.md#negotiation-order steps 1–4, including the back-end
   * channel and GET_SHMEM_CONFIG); the device's shared memory joins {@link Guest.space}.
   * @throws FrontendError as {@link Device}; nothing stays open when it throws.
   */
  async addDevice(options: DeviceOptions): Promise<Device> {
    if (this.#closed) throw new FrontendError("CLOSED", "guest closed");
    // Once per process: the shared-memory paths run once on scratch sockets now, not in the first
    // SHMEM_MAP a back-end sends (docs/performance.md#first-shmem-request).
    await warmUpFrontend();
    const d = await Device.open(this.#host, options);
    this.#devices.add(d);
    return d;
  }

  /**
   * Reconnects a device whose back-end went away (or any device opened with `socketPath`): closes
   * it (its mappings are dropped, the other devices' tables lose them), then connects again with the
   * same options and redoes the whole negotiation. Drivers must be attached again to the returned
   * device (a new back-end starts with fresh rings).
   * @param retry - connect retries while the back-end restarts (default: the device's own policy).
   * @throws FrontendError `BAD_ARGUMENT` for a device opened on an `endpoint`, or as {@link Guest.addDevice}.
   */
  async reconnect(device: Device, retry?: RetryPolicy): Promise<Device> {
    const { endpoint, ...options } = device.options;
    if (endpoint !== undefined || options.socketPath === undefined)
      throw new FrontendError("BAD_ARGUMENT", "only a device opened with socketPath can reconnect");
    await device.close();
    return this.addDevice({ ...options, ...(retry === undefined ? {} : { retry }) });
  }

  /** Reserves guest-physical space for a device window of `size` bytes. */
  #placeShmem(size: bigint): GuestAddress {
    const base = this.#nextWindow;
    this.#nextWindow = (base + size + WINDOW_ALIGN - 1n) & ~(WINDOW_ALIGN - 1n);
    return guestAddress(base);
  }

  /** RAM blocks as memory-table regions, with their memfds (borrowed). @internal */
  ramRegions(): { readonly regions: MemoryRegion[]; readonly fds: number[] } {
    return ramTable(this.ram);
  }

  /** Every live SHMEM mapping of every device. @internal */
  liveMappings(): ShmemMapping[] {
    return [...this.#devices].flatMap((d) => d.sharedMemory?.mappings() ?? []);
  }

  /** Closes every device, then unmaps and closes guest RAM. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const d of [...this.#devices]) await d.close();
    this.ram.dispose();
  }
}
