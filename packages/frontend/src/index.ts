/**
 * `@vhostkit/frontend`: a vhost-user front-end that drives any back-end without a VM.
 *
 * A {@link Guest} owns memfd-backed guest RAM with synthetic user addresses (no host virtual
 * address ever leaves the process) and one guest-physical address space shared by several
 * {@link Device}s, each with its own back-end socket and SHMEM dialect. A device negotiates in
 * the order of docs/protocol.md#negotiation-order (features, protocol features, queue count, memory slots,
 * SET_BACKEND_REQ_FD, SET_OWNER, GET_CONFIG, GET_SHMEM_CONFIG → one VIRTIO Shared Memory Region per
 * non-zero size), then {@link Device.start} sends SET_FEATURES, the memory table (ADD_MEM_REG or
 * SET_MEM_TABLE) and the vrings, and kicks once. The {@link BackendRequestHandler} serves the
 * back-end channel: SHMEM_MAP/UNMAP and MEM_READ/MEM_WRITE through one {@link SharedMemoryPort}
 * (`@vhostkit/regions` does every check), replies per the REPLY_ACK rule (mandatory in
 * crosvm-legacy), CONFIG_CHANGE_MSG, and refusals for the rest.
 * Drivers for virtio-blk, virtio-rng and a raw driver run on `@vhostkit/virtqueue/driver`.
 * {@link runConformance} is the check behind `vhost-user-device check`. Every failure is a typed
 * {@link FrontendError}.
 * @packageDocumentation
 */
export { FrontendError, isFrontendError } from "./errors.js";
export type { FrontendErrorCode } from "./errors.js";
export type { TraceEvent, TraceSink } from "./trace.js";
export { Frontend } from "./frontend.js";
export type { FrontendOptions, FrontendConnectOptions } from "./frontend.js";
export { BackendRequestHandler } from "./backend-request-handler.js";
export type { BackendRequestHandlerOptions, BackendRequestOutcome } from "./backend-request-handler.js";
export { sharedMemoryPort } from "./shared-memory-port.js";
export type { SharedMemoryPort, ShmemMapRequest, ShmemUnmapRequest } from "./shared-memory-port.js";
export { GuestAllocator } from "./guest-allocator.js";
export { Guest } from "./guest.js";
export type { GuestOptions } from "./guest.js";
export { Device } from "./device.js";
export { saveDeviceState, loadDeviceState, DEFAULT_MAX_DEVICE_STATE_BYTES } from "./device-state.js";
export type { SaveDeviceStateOptions } from "./device-state.js";
export { SUPPORTED_PROTOCOL_FEATURES, DRIVER_FEATURE_MASK, DEFAULT_MAX_SHMEM_BYTES } from "./device-options.js";
export type { DeviceOptions, StartOptions } from "./device-options.js";
export type { ReconnectEvent, ReconnectPolicy } from "./reconnect.js";
export type { DeviceInfo } from "./negotiation.js";
export { DriverQueue } from "./driver-queue.js";
export { type DirtyLogOptions, DirtyPageLog, LOG_PAGE_SIZE, dirtyLogSize } from "./dirty-log.js";
export type { StandingChain } from "./driver-queue-types.js";
export type { TransferResult } from "./driver-transfer.js";
export { BlkDriver, BlkFeature, BlkRequestType, BlkStatus, SECTOR_SIZE, decodeBlkConfig } from "./drivers/blk.js";
export type { BlkConfig } from "./drivers/blk.js";
export { RngDriver } from "./drivers/rng.js";
export { RawDriver } from "./drivers/raw.js";
export { FsDriver, decodeFsConfig } from "./drivers/fs.js";
export type { FsConfig, FsListEntry, FsOpenFile } from "./drivers/fs.js";
export { FuseOpcode } from "./drivers/fuse-protocol.js";
export type { FuseAttr, FuseInit } from "./drivers/fuse-protocol.js";
export { NetDriver } from "./drivers/net.js";
export type { NetCounters, NetDriverOptions, NetFrameBatch, NetFrameCallback, NetFramesCallback } from "./drivers/net.js";
export { decodeNetConfig, NET_HEADER_SIZE, NetFeature } from "./drivers/net-header.js";
export type { NetConfig } from "./drivers/net-header.js";
export { VsockDriver } from "./drivers/vsock.js";
export type { VsockDriverOptions } from "./drivers/vsock.js";
export { VsockStream, VSOCK_MAX_PACKET_PAYLOAD } from "./drivers/vsock-stream.js";
export type { VsockAddress, VsockSendPacket, VsockStreamState } from "./drivers/vsock-stream.js";
export {
  VsockOp,
  VsockType,
  VsockShutdown,
  VsockFeature,
  VsockEventId,
  VSOCK_HEADER_SIZE,
  VSOCK_HOST_CID,
  decodeVsockConfig,
  decodeVsockPacket,
  encodeVsockHeader,
  vsockOpName,
} from "./drivers/vsock-packet.js";
export type { VsockHeader } from "./drivers/vsock-packet.js";
export { runConformance } from "./conformance.js";
export type { CheckResult, ConformanceOptions, ConformanceDeviceType } from "./conformance.js";
export { runHostileChecks, HOSTILE_REQUESTS } from "./conformance-hostile.js";
export type { HostileRequest, HostileStep } from "./conformance-hostile.js";
export { DeviceStatus } from "./conformance-lifecycle.js";
