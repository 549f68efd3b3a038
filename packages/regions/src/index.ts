/**
 * `@vhostkit/regions`: guest memory tables and VIRTIO Shared Memory Regions.
 *
 * vhost-user shares guest memory by passing fds that both sides mmap (docs/protocol.md#memory-table). This
 * package holds both halves:
 *
 * - **Back-end:** {@link MemoryTable} maps the regions of SET_MEM_TABLE / ADD_MEM_REG (with
 *   `mmap_offset`), removes them on REM_MEM_REG, replaces the table atomically, reports
 *   GET_MAX_MEM_SLOTS, and translates guest-physical and front-end virtual (vring) addresses into
 *   bounds-checked views.
 * - **Front-end:** {@link GuestRam} allocates guest RAM from sealed memfds and describes it as
 *   memory-table regions with synthetic user addresses; {@link DeviceSharedMemory} reserves each
 *   VIRTIO Shared Memory Region (GET_SHMEM_CONFIG) with PROT_NONE and serves BACKEND_SHMEM_MAP /
 *   BACKEND_SHMEM_UNMAP into the reservation (docs/shmem.md#mapping-rules, docs/shmem.md#security-rules); {@link GuestAddressSpace} is
 *   the whole guest-physical space (RAM + every device's regions) as one {@link GuestMemory}.
 *
 * Consumers (virtqueue, fallback, devices) depend only on the {@link GuestMemory} interface. u64
 * values are `bigint`; addresses carry {@link GuestAddress} / {@link UserAddress} brands. Every
 * failure is a {@link RegionError} with a stable `code`; translation misses are typed results.
 *
 * @packageDocumentation
 */
export { guestAddress, userAddress } from "./guest-address.js";
export type { GuestAddress, UserAddress } from "./guest-address.js";
export type { GuestMemory, HostSpan, HostWindow, TranslateMiss, TranslateResult } from "./guest-memory.js";
export { RegionError, isRegionError } from "./errors.js";
export type { RegionErrorCode, RegionErrorDetail } from "./errors.js";
export type { FdInput } from "./fd-input.js";
export {
  DeviceSharedMemory,
  SHMEM_MAP_FLAG_RW,
  DEFAULT_MAX_MAPPINGS_PER_REGION,
  DEFAULT_MAX_MAPPINGS_PER_DEVICE,
  MAX_SHMIDS,
} from "./shmem-region.js";
export type { DeviceSharedMemoryOptions, ShmemMapping, ShmemMappingEvent, ShmemRegionInfo } from "./shmem-region.js";
export { MemoryTable, DEFAULT_MAX_MEM_SLOTS } from "./memory-table.js";
export type { MemoryRegionDescriptor, MemoryRegionWithFd, MappedRegion, MemoryTableOptions } from "./memory-table.js";
export { GuestRam, SYNTHETIC_USER_BASE } from "./guest-ram.js";
export type { GuestRamBlock, GuestRamOptions, GuestRamRegion } from "./guest-ram.js";
export { GuestAddressSpace } from "./guest-address-space.js";
export { translateRange } from "./span-lookup.js";
