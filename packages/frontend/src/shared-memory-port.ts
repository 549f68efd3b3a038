/**
 * The one port through which a {@link BackendRequestHandler} acts on guest memory: SHMEM_MAP /
 * SHMEM_UNMAP on the device's VIRTIO Shared Memory Regions, and MEM_READ / MEM_WRITE on all of
 * guest memory.
 * @module
 */
import { RegionError, type DeviceSharedMemory, type GuestMemory, type ShmemMapping } from "@vhostkit/regions";
import type { OwnedFd } from "@vhostkit/transport";

/** The fields of a SHMEM_MAP (either dialect's layout), with its fd. */
export interface ShmemMapRequest {
  /** VIRTIO Shared Memory Region id (u8). */
  readonly shmid: number;
  /** Offset inside the region, bytes. */
  readonly shmOffset: bigint;
  /** Length in bytes. */
  readonly len: bigint;
  /** The fd to map; whoever receives the request takes ownership of it. */
  readonly fd: OwnedFd;
  /** Offset into the fd, bytes. */
  readonly fdOffset: bigint;
  /** SHMEM_MAP flags: `SHMEM_MAP_FLAG_RW` (from `@vhostkit/regions`) or 0 for read-only. */
  readonly flags: bigint;
}

/** The fields of a SHMEM_UNMAP: exactly one earlier mapping. */
export interface ShmemUnmapRequest {
  /** VIRTIO Shared Memory Region id (u8). */
  readonly shmid: number;
  /** Offset of the mapping inside the region, bytes. */
  readonly shmOffset: bigint;
  /** Length of the mapping in bytes. */
  readonly len: bigint;
}

/**
 * Guest memory as one back-end request handler reaches it. A {@link Device} gives its handler a
 * port that also keeps every other back-end of the guest able to reach what this one maps
 * (admission, then propagation into their memory tables after this back-end's reply); a handler
 * outside a guest can use {@link sharedMemoryPort}.
 */
export interface SharedMemoryPort {
  /**
   * Why a new mapping (`writable` or read-only) must be refused before it is made, because some
   * other back-end of the guest could not reach it; `undefined` to go ahead. Asked right before
   * {@link SharedMemoryPort.map}.
   */
  admit(writable: boolean): string | undefined;
  /**
   * BACKEND_SHMEM_MAP into the device's regions, with every check of `DeviceSharedMemory.map`.
   * **Fd ownership:** takes `request.fd` in every case (closed on refusal, else owned by the mapping).
   * @throws RegionError why the mapping is refused (`UNKNOWN_SHMID` too when the device has no regions).
   */
  map(request: ShmemMapRequest): void;
  /**
   * BACKEND_SHMEM_UNMAP of exactly one earlier mapping.
   * @throws RegionError `NOT_FOUND`, `UNKNOWN_SHMID`, `MMAP_FAILED`.
   */
  unmap(request: ShmemUnmapRequest): void;
  /**
   * The guest memory vhostkit's MEM_READ / MEM_WRITE reach (all guest RAM and every live mapping;
   * borrowed), or `undefined` when that extension was not negotiated: both are then refused.
   */
  readonly memory: GuestMemory | undefined;
  /**
   * The handler finished a request and its reply, if one was due, went out: the mapping changes it
   * made may now reach other back-ends (reply first, docs/shmem.md#reply-first-ordering).
   */
  requestHandled(): void;
}

/**
 * SHMEM_MAP into `regions` (`undefined`: the device has none), `request.fd` taken in every case.
 * @returns the new mapping.
 * @throws RegionError as `DeviceSharedMemory.map`; `UNKNOWN_SHMID` without regions.
 * @internal
 */
export function mapInto(regions: DeviceSharedMemory | undefined, request: ShmemMapRequest): ShmemMapping {
  if (regions === undefined) {
    request.fd.close();
    throw noRegions(request.shmid);
  }
  return regions.map(request.shmid, request.shmOffset, request.len, request.fd, request.fdOffset, request.flags);
}

/** `UNKNOWN_SHMID` for a device without shared memory regions. @internal */
export function noRegions(shmid: number): RegionError {
  return new RegionError("UNKNOWN_SHMID", `shmid ${shmid}: the device has no shared memory regions`, { shmid });
}

/**
 * A port with no other back-end to keep in step: every mapping is admitted and nothing waits for
 * replies. For a handler serving a back-end outside a {@link Guest} (tests, benchmarks).
 * @param parts - the device's regions (SHMEM_MAP/UNMAP; without them both are refused) and the
 *   guest memory MEM_READ/MEM_WRITE reach (without it both are refused). Borrowed.
 */
export function sharedMemoryPort(parts: { readonly regions?: DeviceSharedMemory; readonly memory?: GuestMemory }): SharedMemoryPort {
  const { regions, memory } = parts;
  return {
    admit: () => undefined,
    map: (request) => void mapInto(regions, request),
    unmap: (request) => {
      if (regions === undefined) throw noRegions(request.shmid);
      regions.unmap(request.shmid, request.shmOffset, request.len);
    },
    memory,
    requestHandled: () => undefined,
  };
}
