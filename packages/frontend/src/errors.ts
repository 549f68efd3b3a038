/**
 * The error type of `@vhostkit/frontend`.
 * @module
 */
import { isVhostUserError, isWireError, VhostUserError, type ErrorDetail } from "@vhostkit/wire";
import { isTransportError } from "@vhostkit/transport";

/**
 * Why a front-end operation failed. Codes are stable; branch on them, not on messages.
 *
 * - `NEGOTIATION`: the back-end lacks something the front-end requires (VERSION_1, a queue, a feature).
 * - `PROTOCOL`: the back-end broke the protocol (wrong reply size, id, flags or fds; a malformed payload).
 * - `REFUSED`: the back-end answered a request with a non-zero REPLY_ACK status or a zero-size reply.
 * - `BAD_SHMEM_CONFIG`: the GET_SHMEM_CONFIG reply is not trustworthy (docs/shmem.md#distrust-the-region-query).
 * - `DISCONNECTED`: the back-end closed the connection or died.
 * - `TIMEOUT`: the back-end did not answer or complete a request in time.
 * - `DEVICE_FAILED`: the device was marked failed earlier (its `cause` is the original error).
 * - `IO_ERROR`: a virtio request completed with an error status (virtio-blk IOERR).
 * - `UNSUPPORTED`: the device does not support the operation (virtio-blk UNSUPP, feature not negotiated).
 * - `BAD_ARGUMENT`: a caller-supplied value is invalid (sector count, buffer length, queue index).
 * - `OUT_OF_MEMORY`: guest RAM has no room for the rings or buffers.
 * - `CLOSED`: the device or guest was closed.
 * - `RECONNECT_FAILED`: the back-end was lost and no connection to a new one succeeded within the
 *   device's reconnect policy (`cause`: the last attempt's error).
 * - `FEATURES_WITHDRAWN`: a restarted back-end no longer offers a feature (virtio or protocol) the
 *   device had acknowledged, or changed its shared memory regions: the running driver cannot follow.
 */
export type FrontendErrorCode =
  | "NEGOTIATION"
  | "PROTOCOL"
  | "REFUSED"
  | "BAD_SHMEM_CONFIG"
  | "DISCONNECTED"
  | "TIMEOUT"
  | "DEVICE_FAILED"
  | "IO_ERROR"
  | "UNSUPPORTED"
  | "BAD_ARGUMENT"
  | "OUT_OF_MEMORY"
  | "CLOSED"
  | "RECONNECT_FAILED"
  | "FEATURES_WITHDRAWN";

/**
 * Error thrown by `@vhostkit/frontend`. `detail.request` names the vhost-user request or virtio
 * operation involved; `cause` keeps the transport, wire or region error underneath.
 */
export class FrontendError extends VhostUserError<FrontendErrorCode> {}

/** True when `x` is a {@link FrontendError} (brand check plus class name; works across package copies). */
export function isFrontendError(x: unknown): x is FrontendError {
  return isVhostUserError(x) && x.name === "FrontendError";
}

/**
 * True when `err` is a {@link FrontendError} that means the connection to the back-end is lost or
 * can no longer be trusted: `DISCONNECTED`, `TIMEOUT` (a request may still be in flight) or
 * `PROTOCOL` (the back-end broke the protocol). Such an error fails the device; any other failure
 * (a refusal, a bad argument) leaves the connection usable.
 * @internal
 */
export function isConnectionLost(err: unknown): boolean {
  return isFrontendError(err) && (err.code === "DISCONNECTED" || err.code === "TIMEOUT" || err.code === "PROTOCOL");
}

/**
 * Wraps any error from a lower layer as a {@link FrontendError} for `request`: transport errors
 * become `DISCONNECTED` / `TIMEOUT` / `PROTOCOL`, wire errors `PROTOCOL`; a FrontendError passes through.
 * @internal
 */
export function asFrontendError(err: unknown, request: string, detail: ErrorDetail = {}): FrontendError {
  if (isFrontendError(err)) return err;
  const raw = err instanceof Error ? err.message : String(err);
  // "connect /x.sock: no such file or directory (ENOENT)" already says what failed: no "connect: " in front.
  const text = raw.startsWith(`${request.toLowerCase()} `) ? raw : `${request.toLowerCase()}: ${raw}`;
  if (isTransportError(err)) {
    const code: FrontendErrorCode = err.code === "TIMEOUT" ? "TIMEOUT" : err.code === "BAD_REPLY" || err.kind === "retry" ? "PROTOCOL" : "DISCONNECTED";
    return new FrontendError(code, text, { request, ...detail }, { cause: err });
  }
  if (isWireError(err)) return new FrontendError("PROTOCOL", text, { request, ...detail }, { cause: err });
  return new FrontendError("PROTOCOL", text, { request, ...detail }, { cause: err });
}
