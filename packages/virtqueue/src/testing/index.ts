/**
 * `@vhostkit/virtqueue/testing`: test doubles for code built on virtqueues — an in-memory
 * multi-region {@link ArrayGuestMemory}. Pair it with the driver from `@vhostkit/virtqueue/driver`
 * to test device code without a VM or sockets.
 * @packageDocumentation
 */
export { ArrayGuestMemory } from "./array-guest-memory.js";
export type { ArrayRegion, ArrayRegionSpec } from "./array-guest-memory.js";
