/**
 * `@vhostkit/wire`: vhost-user messages as bytes and typed values. Pure and runtime-neutral: no I/O,
 * no fds, no Bun or Node types. Provides the 12-byte header codec, the front-end and back-end request
 * tables (PROTOCOL.md §2), feature bits (§3), size limits (§1.2), SHMEM dialects (SHMEM.md §2) and
 * the typed {@link WireError} every decoder throws. Transport, regions, frontend and backend build on it.
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
  featureNames,
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
