/**
 * `@vhostkit/backend`: a device-side framework for vhost-user. A device implements the small
 * {@link DeviceBackend} interface (features, queue count and size, a queue handler, optional config
 * space and VIRTIO Shared Memory Regions); {@link serve} listens on a socket and the
 * {@link Dispatcher} handles the whole front-end protocol — negotiation, memory table
 * (SET_MEM_TABLE / ADD_MEM_REG / REM_MEM_REG), vrings, config, status, reset, the back-end channel
 * and GET_SHMEM_CONFIG — with REPLY_ACK exactly per spec. The {@link BackendClient} sends
 * SHMEM_MAP/UNMAP (only while the device runs), CONFIG_CHANGE_MSG and vhostkit's MEM_READ/MEM_WRITE.
 * Hostile front-ends get failure replies or are dropped; every fd is closed exactly once.
 * @packageDocumentation
 */
export { BackendError, isBackendError } from "./errors.js";
export type { BackendErrorCode } from "./errors.js";
export type { DeviceBackend, DeviceContext, QueueContext, ShmemRegionSpec } from "./device-backend.js";
export type { StateReader, StateWriter } from "./device-state.js";
export { BackendClient } from "./backend-client.js";
export type { BackendChannel, BackendClientOptions, ShmemMapArgs, ShmemUnmapArgs } from "./backend-client.js";
export { Dispatcher } from "./dispatcher.js";
export { FRAMEWORK_FEATURES, FRAMEWORK_PROTOCOL_FEATURES } from "./session.js";
export type { BackendEvent, DispatcherOptions } from "./dispatcher-options.js";
export { serve, serveFd } from "./server.js";
export type { BackendServer, ServeOptions } from "./server.js";
