/**
 * `@vhostkit/fallback`: cross-device buffers for vhost-user back-ends. A guest can hand device B a
 * buffer that lives in device A's VIRTIO Shared Memory Region; B's memory table cannot translate it
 * (docs/shmem.md#cross-device-buffers). Upstream answers with eager propagation (the front-end adds A's mappings to B's
 * table, done by `@vhostkit/frontend`); vhostkit also defines MEM_READ / MEM_WRITE (docs/shmem.md#vhostkit-memory-access-extension),
 * and {@link FallbackMemory} is the back-end's side of it: a `GuestMemory` that uses the direct
 * mapping where it exists and asks the front-end to copy the rest, so device code written against
 * the virtqueue segment API does not change.
 * @packageDocumentation
 */
export { FallbackMemory } from "./fallback-memory.js";
export type { FallbackMemoryOptions, MemAccessChannel } from "./fallback-memory.js";
export { FallbackError, isFallbackError } from "./errors.js";
export type { FallbackErrorCode } from "./errors.js";
