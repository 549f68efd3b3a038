/**
 * The reply rules of the side that handles front-end requests (docs/protocol.md#reply-rules): an always-replied
 * request gets its reply; any other gets an ack only when REPLY_ACK was negotiated **and** its
 * NEED_REPLY flag is set. A refused request gets a failure ack under the same condition, GET_CONFIG
 * the spec's zero-size reply, and anything else cannot be answered: the front-end is dropped.
 * @module
 */
import type { OwnedFd } from "@vhostkit/transport";
import { alwaysReplied, FrontendRequest, HeaderFlag, type MessageSpec } from "@vhostkit/wire";

/** What a request that was carried out gets back: its reply, an ack with status 0, or nothing. */
export type SuccessReply = "reply" | "ack" | "none";

/**
 * What a refused request gets back: the zero-size reply (GET_CONFIG), an inflight description with
 * `mmap_size` 0 and no fd (GET_INFLIGHT_FD: "no inflight area", as libvhost-user answers and QEMU
 * accepts), SET_DEVICE_STATE_FD's error reply (error 1, bit 8 set: no fd), CHECK_DEVICE_STATE's
 * u64 1, an ack with status 1, or nothing (the front-end is dropped).
 */
export type RefusalReply = "empty-reply" | "no-inflight-area" | "device-state-error" | "failure-value" | "failure-ack" | "drop";

/**
 * A reply value with fds attached (GET_INFLIGHT_FD): the dispatcher sends the fds with the reply
 * and closes them afterwards, sent or not.
 * @internal
 */
export class FdReply {
  /** The reply value, encoded by the request's reply codec. */
  readonly value: unknown;
  /** Fds for the reply; ownership passes to the dispatcher. */
  readonly fds: readonly OwnedFd[];

  constructor(value: unknown, fds: readonly OwnedFd[]) {
    this.value = value;
    this.fds = fds;
  }
}

/**
 * @param spec - the request's row in the message table.
 * @param flags - the request's header flags.
 * @param replyAck - REPLY_ACK was negotiated.
 * @param logShmfd - LOG_SHMFD was negotiated (SET_LOG_BASE is then always answered).
 * @internal
 */
export function successReply(spec: MessageSpec, flags: number, replyAck: boolean, logShmfd = false): SuccessReply {
  if (alwaysReplied(spec, { logShmfd })) return "reply";
  return (flags & HeaderFlag.NEED_REPLY) !== 0 && replyAck ? "ack" : "none";
}

/**
 * @param spec - the request's row in the message table, `undefined` for an unknown request.
 * @param flags - the request's header flags.
 * @param replyAck - REPLY_ACK was negotiated.
 * @param logShmfd - LOG_SHMFD was negotiated (a refused SET_LOG_BASE cannot then be answered: dropped).
 * @internal
 */
export function refusalReply(spec: MessageSpec | undefined, flags: number, replyAck: boolean, logShmfd = false): RefusalReply {
  if (spec?.id === FrontendRequest.GET_CONFIG) return "empty-reply";
  if (spec?.id === FrontendRequest.GET_INFLIGHT_FD) return "no-inflight-area";
  if (spec?.id === FrontendRequest.SET_DEVICE_STATE_FD) return "device-state-error";
  if (spec?.id === FrontendRequest.CHECK_DEVICE_STATE) return "failure-value";
  if ((flags & HeaderFlag.NEED_REPLY) !== 0 && replyAck && (spec === undefined || !alwaysReplied(spec, { logShmfd }))) return "failure-ack";
  return "drop";
}
