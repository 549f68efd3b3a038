import { WireError } from "./errors.js";

/** Front-end → back-end request ids (docs/protocol.md#front-end-requests), spec spelling without the `VHOST_USER_` prefix. */
export const FrontendRequest = {
  GET_FEATURES: 1,
  SET_FEATURES: 2,
  SET_OWNER: 3,
  RESET_OWNER: 4,
  SET_MEM_TABLE: 5,
  SET_LOG_BASE: 6,
  SET_LOG_FD: 7,
  SET_VRING_NUM: 8,
  SET_VRING_ADDR: 9,
  SET_VRING_BASE: 10,
  GET_VRING_BASE: 11,
  SET_VRING_KICK: 12,
  SET_VRING_CALL: 13,
  SET_VRING_ERR: 14,
  GET_PROTOCOL_FEATURES: 15,
  SET_PROTOCOL_FEATURES: 16,
  GET_QUEUE_NUM: 17,
  SET_VRING_ENABLE: 18,
  SEND_RARP: 19,
  NET_SET_MTU: 20,
  SET_BACKEND_REQ_FD: 21,
  IOTLB_MSG: 22,
  SET_VRING_ENDIAN: 23,
  GET_CONFIG: 24,
  SET_CONFIG: 25,
  CREATE_CRYPTO_SESSION: 26,
  CLOSE_CRYPTO_SESSION: 27,
  POSTCOPY_ADVISE: 28,
  POSTCOPY_LISTEN: 29,
  POSTCOPY_END: 30,
  GET_INFLIGHT_FD: 31,
  SET_INFLIGHT_FD: 32,
  GPU_SET_SOCKET: 33,
  RESET_DEVICE: 34,
  VRING_KICK: 35,
  GET_MAX_MEM_SLOTS: 36,
  ADD_MEM_REG: 37,
  REM_MEM_REG: 38,
  SET_STATUS: 39,
  GET_STATUS: 40,
  GET_SHARED_OBJECT: 41,
  SET_DEVICE_STATE_FD: 42,
  CHECK_DEVICE_STATE: 43,
  GET_SHMEM_CONFIG: 44,
  GET_VRING_BASE_SKIP_DRAIN: 45,
  /** crosvm-legacy dialect only (docs/shmem.md#dialects): query shared memory regions. */
  GET_SHARED_MEMORY_REGIONS: 1004,
} as const;

/** Back-end → front-end request ids (docs/protocol.md#back-end-requests, docs/shmem.md#dialects), without `VHOST_USER_`. */
export const BackendRequest = {
  BACKEND_IOTLB_MSG: 1,
  BACKEND_CONFIG_CHANGE_MSG: 2,
  BACKEND_VRING_HOST_NOTIFIER_MSG: 3,
  BACKEND_VRING_CALL: 4,
  BACKEND_VRING_ERR: 5,
  BACKEND_SHARED_OBJECT_ADD: 6,
  BACKEND_SHARED_OBJECT_REMOVE: 7,
  BACKEND_SHARED_OBJECT_LOOKUP: 8,
  BACKEND_SHMEM_MAP: 9,
  BACKEND_SHMEM_UNMAP: 10,
  /** vhostkit extension (docs/shmem.md#vhostkit-memory-access-extension), gated by VHOSTKIT_MEM_RW. */
  BACKEND_MEM_READ: 11,
  /** vhostkit extension (docs/shmem.md#vhostkit-memory-access-extension), gated by VHOSTKIT_MEM_RW. */
  BACKEND_MEM_WRITE: 12,
  /** crosvm-legacy dialect only: 32-byte `VhostUserShmemMapMsg`. */
  CROSVM_SHMEM_MAP: 1000,
  /** crosvm-legacy dialect only: 24-byte `VhostUserShmemUnmapMsg`. */
  CROSVM_SHMEM_UNMAP: 1001,
} as const;

/** Name of a front-end request (key of {@link FrontendRequest}). */
export type FrontendRequestName = keyof typeof FrontendRequest;
/** Name of a back-end request (key of {@link BackendRequest}). */
export type BackendRequestName = keyof typeof BackendRequest;
/** Which socket a request id belongs to: the main socket (front-end requests) or the back-end channel. */
export type Channel = "frontend" | "backend";

const FRONTEND_NAMES = new Map<number, FrontendRequestName>((Object.entries(FrontendRequest) as [FrontendRequestName, number][]).map(([k, v]) => [v, k]));
const BACKEND_NAMES = new Map<number, BackendRequestName>((Object.entries(BackendRequest) as [BackendRequestName, number][]).map(([k, v]) => [v, k]));

/** Spec name of request `code` on `channel`, or `undefined` when the id is unknown. */
export function tryRequestName(channel: Channel, code: number): string | undefined {
  return channel === "frontend" ? FRONTEND_NAMES.get(code) : BACKEND_NAMES.get(code);
}

/** Spec name of request `code` on `channel` for logs; unknown ids give `"UNKNOWN(0x..)"`, never throw. */
export function requestName(channel: Channel, code: number): string {
  return tryRequestName(channel, code) ?? `UNKNOWN(0x${(code >>> 0).toString(16)})`;
}

/**
 * Spec name of a known request.
 * @throws WireError `UNKNOWN_REQUEST` when `code` is not in the table for `channel`.
 */
export function requireRequestName(channel: Channel, code: number): string {
  const name = tryRequestName(channel, code);
  if (name === undefined) {
    throw new WireError("UNKNOWN_REQUEST", `unknown ${channel} request id 0x${(code >>> 0).toString(16)}`, {
      actual: code,
      offset: 0,
    });
  }
  return name;
}
