import { HeaderFlag } from "@vhostkit/wire";
import { copyMessage, NO_FD_NUMBERS, type BorrowedMessage, type Endpoint, type PayloadTail, type ReceivedMessage } from "./endpoint.js";
import { TransportError } from "./transport-error.js";

/** Per-request options of {@link RequestChannel.request}. */
export interface RequestOptions {
  /** fds to attach (borrowed, not closed). */
  readonly fds?: readonly number[];
  /** Wait for a reply (GET_* requests and the other always-replied requests of docs/protocol.md#front-end-requests). */
  readonly expectReply?: boolean;
  /**
   * Set NEED_REPLY on a request that is always answered anyway (vhostkit MEM_READ/MEM_WRITE carry
   * flags 0x9, docs/shmem.md#extension-wire-format). For ack-only requests use {@link RequestChannel.requestAck}.
   */
  readonly needReply?: boolean;
  /** Timeout in milliseconds (default: the channel's). */
  readonly timeoutMs?: number;
}

/** Options of {@link RequestChannel.requestWith}. */
export interface RequestWithOptions extends Omit<RequestOptions, "expectReply"> {
  /**
   * Receive the end of a reply of the expected length straight into a buffer
   * ({@link Endpoint.recvWith}); the reply is then lent with `tailed: true`.
   */
  readonly tail?: PayloadTail;
}

/** Options of {@link RequestChannel}. */
export interface RequestChannelOptions {
  /** Default per-request timeout in milliseconds (default 5000). */
  readonly timeoutMs?: number;
  /** REPLY_ACK negotiated on this connection (can be changed later with {@link RequestChannel.replyAck}). */
  readonly replyAck?: boolean;
}

const REPLY_FLAGS = HeaderFlag.VERSION | HeaderFlag.REPLY;

/**
 * The u64 status of a lent REPLY_ACK reply (its fds, which an ack never carries, closed), or
 * `-(length + 1)` when the payload is not exactly 8 bytes (a u64 status is never negative).
 */
function ackStatus(reply: BorrowedMessage): bigint {
  for (const f of reply.fds) f.close();
  const p = reply.payload;
  if (p.byteLength !== 8) return -BigInt(p.byteLength) - 1n;
  return new DataView(p.buffer, p.byteOffset, 8).getBigUint64(0, true);
}

/** A request payload: one buffer, or parts sent as one payload ({@link Endpoint.send}). */
export type Payload = Uint8Array | readonly Uint8Array[];

/** VERSION, plus NEED_REPLY when asked for. */
function requestFlags(options: RequestOptions): number {
  return HeaderFlag.VERSION | (options.needReply === true ? HeaderFlag.NEED_REPLY : 0);
}

/**
 * Request/reply for the requesting side of one socket: the front-end on the main socket, the
 * back-end on the back-end channel.
 *
 * - At most one outstanding request (a concurrent call rejects with `BUSY`, kind `retry`).
 * - A reply must echo the request id and carry flags exactly VERSION|REPLY (0x5), as QEMU demands;
 *   anything else is `BAD_REPLY`.
 * - A timeout, a bad reply or a dead peer rejects the request, closes the endpoint (the stream can no
 *   longer be trusted) and latches the error: every later call rejects with it.
 *
 * Owns the endpoint's receive side while a request waits; closes the endpoint on fatal errors.
 */
export class RequestChannel {
  readonly #ep: Endpoint;
  readonly #timeoutMs: number;
  #busy = false;
  #latched: TransportError | undefined;
  /** performance.now() by which the outstanding request's reply must arrive (Infinity: none waits). */
  #deadline = Infinity;
  #deadlineMs = 0;
  #deadlineRequest = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** When {@link RequestChannel.#timer} fires (performance.now() ms). */
  #timerAt = 0;
  /** REPLY_ACK was negotiated: {@link RequestChannel.requestAck} sets NEED_REPLY and waits. */
  replyAck: boolean;

  /**
   * @param endpoint - borrowed; closed by this channel on timeout or protocol error.
   * @param options - default timeout and whether REPLY_ACK is negotiated.
   */
  constructor(endpoint: Endpoint, options: RequestChannelOptions = {}) {
    this.#ep = endpoint;
    this.#timeoutMs = options.timeoutMs ?? 5000;
    this.replyAck = options.replyAck ?? false;
  }

  /** The error that ended this channel, if any. */
  get error(): TransportError | undefined {
    return this.#latched ?? this.#ep.error;
  }

  /**
   * Send `request` with version flags and, when `expectReply`, wait for its reply.
   * @returns the reply (the caller owns its fds), or `undefined` when no reply was expected.
   * @throws TransportError `BUSY`, `TIMEOUT`, `BAD_REPLY`, or any endpoint error.
   */
  async request(request: number, payload: Payload, options: RequestOptions = {}): Promise<ReceivedMessage | undefined> {
    return this.#exchange(
      request,
      requestFlags(options),
      payload,
      options,
      options.expectReply === true || options.needReply === true ? copyMessage : undefined,
    );
  }

  /**
   * Send `request` and lend its reply to `take` ({@link Endpoint.recvWith}: views valid only while
   * `take` runs), for replies whose payload goes straight to its destination without an
   * intermediate copy (MEM_READ data). The reply is checked (request id, flags 0x5) before `take`
   * sees it. An error thrown by `take` is passed on and does not end the channel.
   * @returns what `take` returned.
   * @throws TransportError as {@link RequestChannel.request}, or whatever `take` throws.
   */
  async requestWith<T>(request: number, payload: Payload, take: (reply: BorrowedMessage) => T, options: RequestWithOptions = {}): Promise<T> {
    // With a `take`, #exchange resolves with what it returned.
    return this.#exchange(request, requestFlags(options), payload, options, take) as Promise<T>;
  }

  /**
   * Send `request` that has no reply of its own, asking for a REPLY_ACK status when REPLY_ACK is
   * negotiated (docs/protocol.md#reply-rules). Without REPLY_ACK the request is sent plainly and 0n returned.
   * @returns the u64 status: 0n = success, anything else = the peer's failure code.
   * @throws TransportError `BAD_REPLY` when the ack is not exactly 8 bytes, or as {@link RequestChannel.request}.
   */
  async requestAck(request: number, payload: Payload, options: Omit<RequestOptions, "expectReply"> = {}): Promise<bigint> {
    if (!this.replyAck) {
      await this.#exchange(request, HeaderFlag.VERSION, payload, options, undefined);
      return 0n;
    }
    // The status is read from the lent reply: nothing is copied or allocated per ack.
    const status = await this.#exchange(request, HeaderFlag.VERSION | HeaderFlag.NEED_REPLY, payload, options, ackStatus);
    if (status === undefined) return 0n;
    if (status < 0n) {
      throw this.#fatal(
        new TransportError("BAD_REPLY", "broken", `request ${request}: ack payload 0x${(-status - 1n).toString(16)} bytes, expected 0x8`, undefined, {
          expected: 8,
          actual: Number(-status - 1n),
        }),
      );
    }
    return status;
  }

  /** Send, then (when `take` is given) receive the reply, check it and lend it to `take`. */
  async #exchange<T>(
    request: number,
    flags: number,
    payload: Payload,
    options: RequestWithOptions,
    take: ((reply: BorrowedMessage) => T) | undefined,
  ): Promise<T | undefined> {
    if (this.#latched) throw this.#latched;
    if (this.#busy) throw new TransportError("BUSY", "retry", `request ${request}: another request is outstanding`);
    this.#busy = true;
    let takeThrew = false;
    try {
      await this.#ep.send(request, flags, payload, options.fds ?? NO_FD_NUMBERS);
      if (take === undefined) return undefined;
      this.#startDeadline(request, options.timeoutMs ?? this.#timeoutMs);
      return await this.#ep.recvWith((reply) => {
        if (reply.request !== request || reply.flags !== REPLY_FLAGS) {
          // recvWith closes the reply's fds.
          throw new TransportError(
            "BAD_REPLY",
            "broken",
            `request ${request}: reply has request ${reply.request} flags 0x${reply.flags.toString(16)}`,
            undefined,
            { expected: request, actual: reply.request },
          );
        }
        try {
          return take(reply);
        } catch (err) {
          takeThrew = true;
          throw err;
        }
      }, options.tail);
    } catch (err) {
      // A passed deadline latched TIMEOUT and closed the endpoint under the receive: report the
      // timeout, not the close (nothing else latches while a request is outstanding).
      if (this.#latched !== undefined) throw this.#latched;
      // Transport failures and a bad reply end the channel; an error of `take` (the caller's own
      // check of a reply that was read completely) leaves the stream in sync and does not.
      if (!takeThrew && err instanceof TransportError && err.kind !== "retry") this.#fatal(err);
      throw err;
    } finally {
      this.#deadline = Infinity;
      this.#busy = false;
    }
  }

  /**
   * Give the reply to `request` until `ms` from now. One timer serves every request of the channel:
   * it is armed when none is, and when it fires before the current deadline it re-arms for the
   * rest, so a request costs no timer of its own. A missed deadline latches `TIMEOUT` and closes
   * the endpoint, which ends the receive.
   */
  #startDeadline(request: number, ms: number): void {
    this.#deadline = performance.now() + ms;
    this.#deadlineMs = ms;
    this.#deadlineRequest = request;
    if (this.#timer !== undefined && this.#timerAt <= this.#deadline) return;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#arm(ms);
  }

  #arm(ms: number): void {
    this.#timerAt = performance.now() + ms;
    // Unreferenced: a waiting receive keeps the process alive by itself, and an idle channel must not.
    this.#timer = setTimeout(
      () => {
        this.#timer = undefined;
        if (this.#deadline === Infinity) return; // idle: disarm until the next request
        const left = this.#deadline - performance.now();
        if (left > 0) {
          this.#arm(left);
          return;
        }
        this.#fatal(new TransportError("TIMEOUT", "broken", `request ${this.#deadlineRequest}: no reply within ${this.#deadlineMs} ms`));
      },
      Math.max(1, Math.ceil(ms)),
    );
    this.#timer.unref?.();
  }

  #fatal(err: TransportError): TransportError {
    this.#latched ??= err;
    this.#ep.close();
    return err;
  }
}

/**
 * Send the reply to `request` on `endpoint`: flags exactly VERSION|REPLY (0x5), the request id echoed
 * (docs/protocol.md#message-header). Used by the handling side of a socket (back-end dispatcher, front-end handler
 * of back-end requests).
 * @param fds - borrowed, attached to the header.
 * @throws TransportError as {@link Endpoint.send}.
 */
export function sendReply(endpoint: Endpoint, request: number, payload: Payload, fds: readonly number[] = NO_FD_NUMBERS): Promise<void> {
  return endpoint.send(request, REPLY_FLAGS, payload, fds);
}

/**
 * Send a REPLY_ACK status (u64; 0 = success) for `request`.
 * @throws TransportError as {@link Endpoint.send}.
 */
export function sendAck(endpoint: Endpoint, request: number, status: bigint): Promise<void> {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, status, true);
  return sendReply(endpoint, request, b);
}
