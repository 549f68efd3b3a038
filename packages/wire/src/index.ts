/**
 * `@vhostkit/wire`: vhost-user messages as bytes and typed values. Pure and runtime-neutral: no I/O,
 * no fds, no Bun or Node types.
 *
 * vhost-user frames are a 12-byte header (request u32, flags u32, size u32; host order, which
 * vhostkit requires to be little-endian) followed by `size` payload bytes; fds travel beside the
 * header as SCM_RIGHTS. This package provides the header codec, the front-end and back-end request
 * tables (docs/protocol.md#front-end-requests, docs/protocol.md#back-end-requests), one codec
 * object per payload layout (docs/protocol.md#payload-layouts, docs/shmem.md#region-query,
 * docs/shmem.md#map-payload, docs/shmem.md#extension-wire-format), the message table (payload
 * codecs, fd counts, reply rules), whole-frame {@link encodeMessage} / {@link decodeMessage} /
 * {@link decodeReply} / {@link checkFrameSize}, feature bits (docs/protocol.md#feature-bits), size
 * limits (docs/protocol.md#payload-size-limits) and the SHMEM dialects (docs/shmem.md#dialects). Validation is syntax only (sizes, reserved
 * bits, padding, u64 overflow, alignment); semantics belong to frontend/backend. Every failure is a
 * typed {@link WireError}. Golden-frame helpers live in `@vhostkit/wire/testing`.
 * @packageDocumentation
 */
export { VhostUserError, isVhostUserError, WireError, isWireError } from "./errors.js";
export type { ErrorDetail, WireErrorCode } from "./errors.js";
export { HEADER_SIZE, HeaderFlag, needsReply, isReply, writeHeader, decodeHeader } from "./header.js";
export type { MessageHeader } from "./header.js";
export { FrontendRequest, BackendRequest, requestName, tryRequestName, requireRequestName } from "./requests.js";
export type { FrontendRequestName, BackendRequestName, Channel } from "./requests.js";
export {
  VirtioFeature,
  ProtocolFeature,
  VHOSTKIT_MEM_RW,
  VHOSTKIT_MEM_RW_DEFAULT_BIT,
  vhostkitMemRwFeature,
  vhostkitMemRwBufferFeature,
  featureNames,
  protocolFeatureNames,
} from "./features.js";
export {
  MAX_PAYLOAD_SIZE,
  LIBVHOST_USER_MAX_PAYLOAD,
  MAX_FDS_PER_MSG,
  MEM_RW_MAX_DATA,
  MEM_RW_HEADER_SIZE,
  MEM_RW_MAX_PAYLOAD,
  MAX_SHMEM_REGIONS,
  SHMEM_CONFIG_SIZE,
  MAX_MEM_TABLE_REGIONS,
  MAX_CONFIG_SIZE,
  MAX_VRING_SIZE,
} from "./limits.js";
export { UPSTREAM, RUST_VMM_0_16, DRAFT, CROSVM_LEGACY, Dialects } from "./dialect.js";
export type { Dialect, DialectName } from "./dialect.js";
export { ByteReader } from "./codec/byte-reader.js";
export { ByteWriter } from "./codec/byte-writer.js";
export { U64_MAX } from "./codec/checked-math.js";
export type { PayloadCodec, CodecValue } from "./codec/payload-codec.js";
export { Empty, U64, Opaque } from "./messages/scalar.js";
export {
  VringStateCodec,
  VringFileCodec,
  VringAddrCodec,
  VringAreaCodec,
  VRING_NOFD_MASK,
  VRING_INDEX_MASK,
  VRING_F_LOG,
  decodeSplitVringBase,
  encodeSplitVringBase,
  decodePackedVringBase,
  encodePackedVringBase,
} from "./messages/vring.js";
export type { VringState, VringFile, VringAddr, VringArea, SplitVringBase, PackedVringBase } from "./messages/vring.js";
export {
  MemoryRegionCodec,
  MemoryTableCodec,
  memoryTableCodec,
  SingleRegionCodec,
  LogCodec,
  LogBaseReplyCodec,
  MEMORY_REGION_SIZE,
} from "./messages/memory.js";
export type { MemoryRegion, MemoryTable, LogArea } from "./messages/memory.js";
export { DeviceConfigCodec, ConfigFlag } from "./messages/config.js";
export type { DeviceConfig } from "./messages/config.js";
export { IotlbCodec, IotlbPerm, IotlbType } from "./messages/iotlb.js";
export type { IotlbMsg } from "./messages/iotlb.js";
export { InflightCodec } from "./messages/inflight.js";
export type { InflightInfo } from "./messages/inflight.js";
export { SharedObjectCodec, SharedObjectReplyCodec } from "./messages/shared-object.js";
export type { SharedObject } from "./messages/shared-object.js";
export { DeviceStateParamsCodec, DeviceStateReplyCodec, DeviceStateDirection } from "./messages/device-state.js";
export type { DeviceStateParams, DeviceStateReply } from "./messages/device-state.js";
export { MMapRequestCodec, MMapFlag, MMAP_REQUEST_SIZE, ShmemConfigCodec, makeShmemConfig } from "./messages/shmem.js";
export type { MMapRequest, ShmemConfig } from "./messages/shmem.js";
export { CrosvmShmemMapCodec, CrosvmShmemUnmapCodec, CrosvmSharedMemoryRegionsCodec, CrosvmMapFlag } from "./messages/crosvm.js";
export type { CrosvmShmemMap, CrosvmShmemUnmap, CrosvmSharedMemoryRegion, CrosvmSharedMemoryRegions } from "./messages/crosvm.js";
export {
  MemReadRequestCodec,
  MemWriteRequestCodec,
  MemReadReplyCodec,
  MEM_RW_FLAG_IN_BUFFER,
  decodeMemAccessHead,
  decodeMemAccessHeadFlags,
  encodeMemAccessHead,
} from "./messages/mem-access.js";
export type { MemReadRequest, MemData } from "./messages/mem-access.js";
export {
  FrontendMessages,
  BackendMessages,
  FrontendTable,
  BackendTable,
  tryMessageSpec,
  tryMessageSpecByName,
  messageSpecs,
  alwaysReplied,
  expectedFdCount,
  maxFdsFor,
} from "./message-table.js";
export type {
  MessageSpec,
  MessageRow,
  FrontendRows,
  BackendRows,
  FdRule,
  ReplyRule,
  FdRange,
  FrontendRequestValue,
  FrontendReplyValue,
  BackendRequestValue,
  BackendReplyValue,
} from "./message-table.js";
export { encodeMessage, encodeReply, decodeMessage, decodeReply, checkFrameSize } from "./message.js";
export type {
  FrameLimits,
  ReplyOptions,
  DecodedFrame,
  DecodedFrontendRequest,
  DecodedBackendRequest,
  DecodedFrontendReply,
  DecodedBackendReply,
} from "./message.js";
