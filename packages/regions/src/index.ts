/**
 * `@vhostkit/regions`: guest memory tables and VIRTIO Shared Memory Regions.
 * @packageDocumentation
 */
export { guestAddress, userAddress } from "./guest-address.js";
export type { GuestAddress, UserAddress } from "./guest-address.js";
export type { GuestMemory, HostSpan, TranslateMiss, TranslateResult } from "./guest-memory.js";
