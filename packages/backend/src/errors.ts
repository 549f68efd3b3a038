import { VhostUserError, isVhostUserError, type ErrorDetail } from "@vhostkit/wire";

/**
 * Reasons a {@link BackendError} is raised.
 * - `NOT_RUNNING`: SHMEM_MAP/UNMAP asked while the device is not running (before DRIVER_OK, or after
 *   the front-end stopped it with GET_VRING_BASE). QEMU 11.1.3 crashes on such a message, so the
 *   framework refuses to send it.
 * - `NOT_NEGOTIATED`: the feature a call needs (SHMEM, BACKEND_REQ, BACKEND_SEND_FD, CONFIG,
 *   vhostkit MEM_RW) was not negotiated on this connection.
 * - `NO_BACKEND_CHANNEL`: the front-end has not sent SET_BACKEND_REQ_FD.
 * - `REJECTED`: the front-end answered a back-end request with a non-zero status.
 * - `PROTOCOL`: the front-end broke the protocol (bad message, missing/extra fds, bad state).
 * - `UNSUPPORTED`: a request this device or framework does not implement.
 * - `BAD_DEVICE`: the {@link DeviceBackend} definition is invalid.
 * - `DISCONNECTED`: the front-end went away while a call was in flight.
 * - `ABANDONED`: the front-end stopped the device while the request was already sent and waiting
 *   for its reply (`BackendClient.abandon`): the front-end may or may not apply it, so treat the
 *   outcome as unknown (e.g. keep a mapped range reserved until an unmap or reset settles it).
 * - `STATE_TRUNCATED`: a device state stream (load) ended before the device had read all it needed.
 * - `STATE_INVALID`: the device refused the state it was loading (garbage, trailing bytes, over the
 *   size limit).
 * - `STATE_IO`: the device state pipe failed (e.g. the front-end closed its end early).
 * - `STATE_SAVE_FAILED`: the device's `saveState` hook failed.
 */
export type BackendErrorCode =
  | "NOT_RUNNING"
  | "NOT_NEGOTIATED"
  | "NO_BACKEND_CHANNEL"
  | "REJECTED"
  | "PROTOCOL"
  | "UNSUPPORTED"
  | "BAD_DEVICE"
  | "DISCONNECTED"
  | "ABANDONED"
  | "STATE_TRUNCATED"
  | "STATE_INVALID"
  | "STATE_IO"
  | "STATE_SAVE_FAILED";

/** Error raised by `@vhostkit/backend`; `detail.request` names the vhost-user request involved. */
export class BackendError extends VhostUserError<BackendErrorCode> {
  /**
   * @param code - reason.
   * @param message - lowercase message naming the request and values (hex).
   * @param detail - structured detail.
   * @param options - `cause` for a wrapped error.
   */
  constructor(code: BackendErrorCode, message: string, detail: ErrorDetail = {}, options?: { cause?: unknown }) {
    super(code, message, detail, options);
  }
}

/** True when `x` is a {@link BackendError} (brand check plus class name, works across package copies). */
export function isBackendError(x: unknown): x is BackendError {
  return isVhostUserError(x) && x.name === "BackendError";
}

/**
 * A `PROTOCOL` error for `request` (a spec name, lowercased in the message): the front-end broke the rules.
 * @internal
 */
export function protocolError(request: string, message: string, detail: ErrorDetail = {}): BackendError {
  return new BackendError("PROTOCOL", `${request.toLowerCase()}: ${message}`, { request, ...detail });
}
