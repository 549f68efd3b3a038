/**
 * The shared memory of a guest's devices as their back-ends reach it (docs/shmem.md#propagation-policy). Each device's
 * back-end request handler has one {@link SharedMemoryPort}; a SHMEM_MAP through it goes
 *
 *     handler → port.admit: can every other back-end's memory-table mirror reach it?
 *     handler → port.map: into the device's regions; the change goes to every mirror, held by
 *                         this back-end's reply gate
 *     handler: reply, then port.requestHandled(): the gate opens, the mirrors send their updates
 *
 * so every back-end's table follows the mappings, and the back-end that mapped hears its reply first.
 * @module
 */
import type { DeviceSharedMemory, GuestMemory, ShmemMapping, ShmemMappingEvent } from "@vhostkit/regions";
import type { MemoryTableMirror } from "./memory-table-mirror.js";
import { mapInto, noRegions, type SharedMemoryPort, type ShmemMapRequest, type ShmemUnmapRequest } from "./shared-memory-port.js";

/**
 * Holds back what a back-end request changed until the reply to that request went out: the
 * changes made while one request is handled wait for one promise, resolved after its reply.
 */
export class ReplyGate {
  #pending: { readonly promise: Promise<void>; readonly resolve: () => void } | undefined;

  /** What a change made now waits for: the reply to the request being handled. */
  afterReply(): Promise<void> {
    if (this.#pending === undefined) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.#pending = { promise, resolve };
    }
    return this.#pending.promise;
  }

  /** The reply went out, or none will (the device is reset): releases what waits; the next change waits for the next reply. */
  open(): void {
    const p = this.#pending;
    this.#pending = undefined;
    p?.resolve();
  }
}

/**
 * Every device of one guest, as shared memory sees it: its regions and its back-end's memory-table
 * mirror, in the order the devices were added (device numbers in refusals count from 1 in it).
 * @internal
 */
export class GuestSharedMemory {
  /** Mapping changes go into other back-ends' memory tables (the guest's `propagateSharedMemory`). */
  readonly propagating: boolean;
  readonly #ports = new Set<DeviceSharedMemoryPort>();

  /** @param propagating - the guest's `propagateSharedMemory` option. */
  constructor(propagating: boolean) {
    this.propagating = propagating;
  }

  /**
   * A device joins with its regions (`undefined`: none), its back-end's mirror and the memory
   * MEM_READ/MEM_WRITE reach (`undefined`: not negotiated).
   * @returns the port for the device's back-end request handler.
   */
  join(regions: DeviceSharedMemory | undefined, mirror: MemoryTableMirror, memory: GuestMemory | undefined): DeviceSharedMemoryPort {
    const port = new DeviceSharedMemoryPort(this, regions, mirror, memory);
    this.#ports.add(port);
    return port;
  }

  /** A closed device leaves. */
  leave(port: DeviceSharedMemoryPort): void {
    this.#ports.delete(port);
  }

  /**
   * The live mappings that may go into `port`'s back-end table: every writable one, and its own
   * read-only ones (a memory-table entry cannot be read-only, docs/shmem.md#propagation-policy).
   */
  mappingsFor(port: DeviceSharedMemoryPort): ShmemMapping[] {
    return [...this.#ports].flatMap((p) => (p.regions?.mappings() ?? []).filter((m) => m.writable || p === port));
  }

  /** Why a new mapping of `mapper` could not reach some other back-end (naming the device), or `undefined` when it reaches every one. */
  admit(mapper: DeviceSharedMemoryPort, writable: boolean): string | undefined {
    let i = 0;
    for (const p of this.#ports) {
      i++;
      if (p === mapper) continue;
      const why = p.mirror.reachRefusal(writable);
      if (why !== undefined) return `device ${i} could not reach the mapping: ${why}`;
    }
    return undefined;
  }

  /**
   * Hands mapping changes of `source` to every back-end's mirror (each decides whether its table
   * needs them; read-only mappings go only to `source`'s own). Their messages wait for `after`.
   */
  propagate(events: readonly ShmemMappingEvent[], source: DeviceSharedMemoryPort, after: Promise<void>): void {
    if (!this.propagating || events.length === 0) return;
    for (const p of this.#ports) p.mirror.propagate(p === source ? events : events.filter((e) => e.mapping.writable), after);
  }
}

/**
 * One device's {@link SharedMemoryPort}: every change of the device's regions — a map or unmap of
 * its back-end, a reset — is handed to every back-end of the guest, after this back-end's reply;
 * a new mapping is admitted only if every other back-end can reach it. Made by {@link GuestSharedMemory.join}.
 * @internal
 */
export class DeviceSharedMemoryPort implements SharedMemoryPort {
  readonly #guest: GuestSharedMemory;
  /** The device's shared memory regions, `undefined` when it has none. */
  readonly regions: DeviceSharedMemory | undefined;
  /** The device's back-end memory table. */
  readonly mirror: MemoryTableMirror;
  readonly memory: GuestMemory | undefined;
  readonly #gate = new ReplyGate();
  readonly #unsubscribe: () => void;

  /** Use {@link GuestSharedMemory.join}. */
  constructor(guest: GuestSharedMemory, regions: DeviceSharedMemory | undefined, mirror: MemoryTableMirror, memory: GuestMemory | undefined) {
    this.#guest = guest;
    this.regions = regions;
    this.mirror = mirror;
    this.memory = memory;
    // Every other device's bookkeeping follows a change at once (so the admission of the next
    // SHMEM_MAP, from any device, counts this one); their messages wait for our reply.
    this.#unsubscribe = regions?.addListener((e) => guest.propagate([e], this, this.#gate.afterReply())) ?? (() => undefined);
  }

  admit(writable: boolean): string | undefined {
    // Without regions nothing is mapped: map() refuses it, for its own reason.
    return this.regions === undefined ? undefined : this.#guest.admit(this, writable);
  }

  map(request: ShmemMapRequest): void {
    mapInto(this.regions, request);
  }

  unmap(request: ShmemUnmapRequest): void {
    if (this.regions === undefined) throw noRegions(request.shmid);
    this.regions.unmap(request.shmid, request.shmOffset, request.len);
  }

  requestHandled(): void {
    this.#gate.open();
  }

  /** Device failure or close: drops every mapping of the device (out of every back-end's table too) and opens the gate, since no reply will. */
  dropMappings(): void {
    this.regions?.reset();
    this.#gate.open();
  }

  /** The device closed: its back-end is no longer asked or updated. */
  leave(): void {
    this.#unsubscribe();
    this.#guest.leave(this);
  }
}
