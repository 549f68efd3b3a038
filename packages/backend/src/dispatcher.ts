/**
 * Handles front-end requests for one connection: the "front-end requests × handles" corner of the
 * protocol-role grid (docs/architecture.md#protocol-roles). This file is the connection loop: it reads each request, checks
 * its fds against the wire message table, lets the session carry it out (`session.ts`: the
 * semantics) and answers by the reply rules (`reply-policy.ts`).
 * @module
 */
import { callHook, type Endpoint, sendAck, sendReply, type ReceivedMessage } from "@vhostkit/transport";
import {
  HEADER_SIZE,
  ProtocolFeature,
  UPSTREAM,
  decodeMessage,
  encodeReply,
  expectedFdCount,
  isVhostUserError,
  tryMessageSpec,
  type DecodedFrontendRequest,
  type Dialect,
  type MessageSpec,
  type VhostUserError,
} from "@vhostkit/wire";
import type { BackendClient } from "./backend-client.js";
import type { DeviceBackend } from "./device-backend.js";
import type { BackendEvent, DispatcherOptions } from "./dispatcher-options.js";
import { BackendError, protocolError } from "./errors.js";
import { FdReply, refusalReply, successReply } from "./reply-policy.js";
import { Session } from "./session.js";
import { warmUpBackend } from "./warm-up.js";

/** The GET_INFLIGHT_FD answer of a back-end that gives no area: `mmap_size` 0, no fd. */
const NO_INFLIGHT_AREA = { mmapSize: 0n, mmapOffset: 0n, numQueues: 0, queueSize: 0 } as const;

/** Front-end requests served back to back before the dispatcher yields to the event loop once. */
const FAIRNESS_BATCH = 32;

/** A refusal no reply can carry: ends the connection, reported as `dropped` with `error`. */
class DropFrontend extends Error {
  readonly error: VhostUserError;
  constructor(error: VhostUserError) {
    super(error.message);
    this.error = error;
  }
}

/**
 * Serves one front-end connection for one {@link DeviceBackend}: negotiation, memory table, vrings,
 * config, status, reset, the back-end channel and GET_SHMEM_CONFIG, in the orders real front-ends
 * use (QEMU 7.2 sends SET_BACKEND_REQ_FD and SET_VRING_CALL before SET_OWNER; QEMU 11.1 asks
 * GET_SHMEM_CONFIG at the end of device set-up).
 *
 * Errors: a request that breaks the rules gets a failure reply when it has an ack (NEED_REPLY set)
 * and the connection stays up; a request that cannot be answered (always-replied, or no NEED_REPLY,
 * or a framing error) drops the front-end. Every received fd is closed exactly once.
 */
export class Dispatcher {
  readonly #ep: Endpoint;
  readonly #dialect: Dialect;
  readonly #options: DispatcherOptions;
  readonly #session: Session;

  /**
   * @param endpoint - the connected front-end socket; ownership is taken. Fd counts are checked per
   *   request against the wire message table (extra fds are closed and the request refused).
   * @param device - the device; it serves one connection at a time.
   * @param options - dialect, limits, diagnostics.
   * @throws BackendError `BAD_DEVICE` when the device definition is invalid.
   */
  constructor(endpoint: Endpoint, device: DeviceBackend, options: DispatcherOptions = {}) {
    this.#ep = endpoint;
    this.#options = options;
    this.#dialect = options.dialect ?? UPSTREAM;
    this.#session = new Session(device, options, (e) => this.#emit(e));
  }

  /** Virtio features offered in GET_FEATURES. */
  get offeredFeatures(): bigint {
    return this.#session.offeredFeatures;
  }

  /** Protocol features offered in GET_PROTOCOL_FEATURES. */
  get offeredProtocolFeatures(): bigint {
    return this.#session.offeredProtocolFeatures;
  }

  /**
   * True while the device runs: a ring started (SET_VRING_KICK) and none stopped since
   * (GET_VRING_BASE, SET_STATUS 0, reset, disconnect).
   */
  get running(): boolean {
    return this.#session.running;
  }

  /** Protocol features the front-end acknowledged (SET_PROTOCOL_FEATURES). */
  get ackedProtocolFeatures(): bigint {
    return this.#session.ackedProtocolFeatures;
  }

  /** The back-end channel client, once SET_BACKEND_REQ_FD arrived. */
  get client(): BackendClient | undefined {
    return this.#session.client;
  }

  /**
   * Serve requests until the front-end disconnects or is dropped; then stop the rings, unmap guest
   * memory, close every fd, wait for the device's running handlers to return, and reset the device.
   * Never rejects.
   */
  async run(): Promise<void> {
    let end: BackendEvent = { kind: "disconnected" };
    // Once per process: the shared-memory paths run once on scratch sockets before the first
    // request is read, not in a session's first SHMEM_MAP (docs/performance.md#first-shmem-request).
    const reactor = this.#options.reactor;
    await warmUpBackend((ep, device) => new Dispatcher(ep, device, reactor === undefined ? {} : { reactor }).run(), reactor);
    try {
      for (let served = 1; ; served++) {
        // A front-end whose next request is always already queued would otherwise keep this loop in
        // microtasks forever: kicks, timers and back-end replies would starve. Yield now and then.
        if (served % FAIRNESS_BATCH === 0) await new Promise<void>((r) => setImmediate(r));
        let msg: ReceivedMessage;
        try {
          msg = await this.#ep.recv();
        } catch (err) {
          if (isVhostUserError(err) && err.code !== "EOF" && err.code !== "CLOSED") end = { kind: "dropped", error: err };
          return;
        }
        try {
          await this.#handle(msg);
        } finally {
          for (const f of msg.fds) f.close();
        }
      }
    } catch (err) {
      end = {
        kind: "dropped",
        error: err instanceof DropFrontend ? err.error : new BackendError("PROTOCOL", `dispatcher: ${String(err)}`, {}, { cause: err }),
      };
    } finally {
      // The same device object serves the next connection: the session waits for its handlers to
      // return (they fail fast now that the channel and rings are gone) before it resets the device.
      const closed = this.#session.close();
      this.#ep.close();
      await closed;
      // Reported after the teardown, so a listener sees the fds and mappings already released.
      this.#emit(end);
    }
  }

  /**
   * The first half of a graceful shutdown: the device's queue handlers start no new run (what the
   * driver queues stays in the rings for the next back-end); resolves once none runs. The
   * connection is still served: {@link Dispatcher.close} ends it.
   */
  drain(): Promise<void> {
    return this.#session.drain();
  }

  /** Drop the front-end now (the `run` promise then resolves). Idempotent. */
  close(): void {
    this.#ep.close();
  }

  #emit(e: BackendEvent): void {
    callHook(this.#options.onEvent, e); // a throwing listener must not take the connection (or the server) down
  }

  get #replyAck(): boolean {
    return this.#session.negotiated(ProtocolFeature.REPLY_ACK);
  }

  async #handle(msg: ReceivedMessage): Promise<void> {
    const spec = tryMessageSpec("frontend", msg.request, this.#dialect);
    this.#emit({ kind: "request", name: spec?.name ?? `UNKNOWN(${msg.request})`, flags: msg.flags, size: msg.payload.length, fds: msg.fds.length });
    let decoded: DecodedFrontendRequest;
    try {
      decoded = decodeMessage("frontend", msg.frame, this.#dialect);
    } catch (err) {
      await this.#refuse(msg, err as VhostUserError);
      return;
    }
    if (spec === undefined) return; // decodeMessage already refused unknown ids
    // docs/protocol.md#file-descriptors: an fd that comes with REM_MEM_REG (some front-ends send the region's) is
    // closed unused, not refused; the loop in run() closes it.
    const range = spec.name === "REM_MEM_REG" ? { min: 0, max: 1 } : expectedFdCount(spec.fds, decoded.value);
    if (msg.fds.length < range.min || msg.fds.length > range.max) {
      await this.#refuse(
        msg,
        protocolError(spec.name, `${msg.fds.length} fds attached, expected ${range.min === range.max ? range.min : `${range.min}..${range.max}`}`, {
          expected: range.max,
          actual: msg.fds.length,
        }),
      );
      return;
    }
    let reply: unknown;
    try {
      reply = await this.#session.carryOut(decoded, msg.fds);
    } catch (err) {
      const e = isVhostUserError(err)
        ? err
        : new BackendError("PROTOCOL", `${spec.name.toLowerCase()}: ${String(err)}`, { request: spec.name }, { cause: err });
      await this.#refuse(msg, e);
      return;
    }
    const withFds = reply instanceof FdReply ? reply : undefined;
    try {
      await this.#answer(spec, msg, withFds === undefined ? reply : withFds.value, withFds?.fds.map((f) => f.fd) ?? []);
    } finally {
      for (const f of withFds?.fds ?? []) f.close();
    }
  }

  /** Sends what a carried-out request gets by the reply rules; `fds` (borrowed) go with a reply. */
  async #answer(spec: MessageSpec, msg: ReceivedMessage, reply: unknown, fds: readonly number[]): Promise<void> {
    switch (successReply(spec, msg.flags, this.#replyAck, this.#session.negotiated(ProtocolFeature.LOG_SHMFD))) {
      case "reply": {
        const frame = encodeReply("frontend", spec.name as never, reply as never, this.#dialect);
        await sendReply(this.#ep, msg.request, frame.subarray(HEADER_SIZE), fds);
        return;
      }
      case "ack":
        await sendAck(this.#ep, msg.request, 0n);
        return;
      case "none":
        return;
    }
  }

  /** A refused request: answered by the reply rules (reported as `rejected`), or the front-end is dropped. */
  async #refuse(msg: { request: number; flags: number }, error: VhostUserError): Promise<void> {
    const spec = tryMessageSpec("frontend", msg.request, this.#dialect);
    const reply = refusalReply(spec, msg.flags, this.#replyAck, this.#session.negotiated(ProtocolFeature.LOG_SHMFD));
    if (reply === "drop") throw new DropFrontend(error);
    this.#emit({ kind: "rejected", name: spec?.name ?? `UNKNOWN(${msg.request})`, error });
    if (reply === "empty-reply") await sendReply(this.#ep, msg.request, new Uint8Array(0));
    else if (reply === "no-inflight-area")
      await sendReply(this.#ep, msg.request, encodeReply("frontend", "GET_INFLIGHT_FD", NO_INFLIGHT_AREA, this.#dialect).subarray(HEADER_SIZE));
    else if (reply === "device-state-error")
      await sendReply(this.#ep, msg.request, encodeReply("frontend", "SET_DEVICE_STATE_FD", { error: 1, noFd: true }, this.#dialect).subarray(HEADER_SIZE));
    else if (reply === "failure-value")
      await sendReply(this.#ep, msg.request, encodeReply("frontend", "CHECK_DEVICE_STATE", 1n, this.#dialect).subarray(HEADER_SIZE));
    else await sendAck(this.#ep, msg.request, 1n);
  }
}
