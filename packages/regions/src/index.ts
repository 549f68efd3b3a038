/**
 * `@vhostkit/regions`: guest memory tables and VIRTIO Shared Memory Regions.
 * @packageDocumentation
 */
export { guestAddress, userAddress } from "./guest-address.js";
export type { GuestAddress, UserAddress } from "./guest-address.js";
export type { GuestMemory, HostSpan, TranslateMiss, TranslateResult } from "./guest-memory.js";
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
