import type { Endpoint, ReceivedMessage } from "./endpoint.js";
import { TransportError } from "./transport-error.js";

/** Header flag bits used by the request/reply layer (PROTOCOL.md §1). */
export const HeaderFlag = {
  /** Protocol version 1, bits 0..1. */
  VERSION: 0x1,
  /** Message is a reply. */
  REPLY: 0x4,
  /** Sender wants a REPLY_ACK. */
  NEED_REPLY: 0x8,
} as const;

/** Per-request options. */
export interface RequestOptions {
  /** fds to attach (borrowed, not closed). */
  readonly fds?: readonly number[];
  /** Set NEED_REPLY and wait for the u64 ack (only when REPLY_ACK was negotiated). */
  readonly needReply?: boolean;
  /** Wait for a reply even without NEED_REPLY (GET_* requests). */
  readonly expectReply?: boolean;
  /** Timeout in milliseconds (default: the channel's). */
  readonly timeoutMs?: number;
}

/**
 * Request/reply on top of an {@link Endpoint} for the requesting side: at most one outstanding
 * request (a second concurrent call throws `BUSY`); the reply must echo the request code and carry
 * flags exactly VERSION|REPLY (0x5). A timeout, a bad reply or a dead peer rejects the request and
 * closes the endpoint (the stream can no longer be trusted); the error is latched.
 * Owns the endpoint's receive side.
 */
export class RequestChannel {
  readonly #ep: Endpoint;
  readonly #timeoutMs: number;
  #busy = false;
  #latched: TransportError | undefined;

  /**
   * @param endpoint - borrowed; closed by this channel on timeout or protocol error.
   * @param timeoutMs - default per-request timeout in milliseconds (default 5000).
   */
  constructor(endpoint: Endpoint, timeoutMs = 5000) {
    this.#ep = endpoint;
    this.#timeoutMs = timeoutMs;
  }

  /**
   * Send `request` and, when a reply is expected, wait for it.
   * @returns the reply (caller owns its fds), or `undefined` when no reply was expected.
   * @throws TransportError `BUSY`, `TIMEOUT`, `BAD_REPLY`, or any endpoint error.
   */
  async request(request: number, payload: Uint8Array, options: RequestOptions = {}): Promise<ReceivedMessage | undefined> {
    if (this.#latched) throw this.#latched;
    if (this.#busy) throw new TransportError("BUSY", "retry", `request ${request}: another request is outstanding`);
    this.#busy = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      const flags = HeaderFlag.VERSION | (options.needReply === true ? HeaderFlag.NEED_REPLY : 0);
      await this.#ep.send(request, flags, payload, options.fds ?? []);
      if (options.needReply !== true && options.expectReply !== true) return undefined;
      const ms = options.timeoutMs ?? this.#timeoutMs;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          reject(new TransportError("TIMEOUT", "broken", `request ${request}: no reply within ${ms} ms`));
        }, ms);
      });
      const recv = this.#ep.recv();
      recv.catch(() => undefined);
      const reply = await Promise.race([recv, timeout]);
      if (reply.request !== request || reply.flags !== (HeaderFlag.VERSION | HeaderFlag.REPLY)) {
        for (const f of reply.fds) f.close();
        throw new TransportError("BAD_REPLY", "broken", `request ${request}: reply has request ${reply.request} flags 0x${reply.flags.toString(16)}`, undefined, { expected: request, actual: reply.request });
      }
      return reply;
    } catch (err) {
      if (err instanceof TransportError && err.kind !== "retry") {
        this.#latched = err;
        this.#ep.close();
      }
      throw err;
    } finally {
      if (timer !== undefined) clearTimeout(timer);
      this.#busy = false;
    }
  }
}
