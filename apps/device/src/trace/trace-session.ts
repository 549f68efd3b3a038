/**
 * One traced session: a front-end connected to the proxy and the proxy's own connection to the
 * back-end. Every message and every fd is relayed both ways as it arrives, in order per direction;
 * SET_BACKEND_REQ_FD is given the proxy's own socketpair so that the back-end channel is relayed
 * (and traced) too. Each message becomes a {@link TraceRecord} decoded in the negotiated dialect.
 */
import { Endpoint, OwnedFd, socketPair, type ReceivedMessage } from "@vhostkit/transport";
import { alwaysReplied, CROSVM_LEGACY, FrontendRequest, HeaderFlag, MEM_RW_MAX_PAYLOAD, tryMessageSpec, UPSTREAM, type Dialect } from "@vhostkit/wire";
import { describeFrame } from "./describe-frame.js";
import type { TraceRecord } from "./trace-log.js";

/** Limits of every relayed endpoint: the largest frame vhostkit knows of (MEM_READ/MEM_WRITE). */
export const RELAY_ENDPOINT_OPTIONS = { maxPayload: MEM_RW_MAX_PAYLOAD } as const;

type ChannelName = TraceRecord["channel"];
type Side = TraceRecord["from"];

/** The dialect a SET_PROTOCOL_FEATURES payload settles: bit 22 is upstream SHMEM, bit 31 crosvm's; else `current`. */
export function dialectAfter(acked: bigint, current: Dialect): Dialect {
  if ((acked & UPSTREAM.shmemFeature) !== 0n) return UPSTREAM;
  if ((acked & CROSVM_LEGACY.shmemFeature) !== 0n) return CROSVM_LEGACY;
  return current;
}

/** Relays one front-end ↔ back-end session and reports each message. */
export class TraceSession {
  readonly #frontend: Endpoint;
  readonly #backend: Endpoint;
  readonly #onRecord: (r: TraceRecord) => void;
  readonly #start = performance.now();
  #dialect: Dialect;
  /** Back-end channel: the front-end's end (received with SET_BACKEND_REQ_FD) and the proxy's end given to the back-end. */
  #channel: { readonly frontend: Endpoint; readonly backend: Endpoint } | undefined;
  /** When each request that will be answered was relayed, per channel and request id, oldest first. */
  readonly #pending = new Map<string, number[]>();
  readonly #pumps: Promise<void>[] = [];
  #end: string | undefined;

  /** Takes ownership of both endpoints. `dialect` applies until SET_PROTOCOL_FEATURES settles one. */
  constructor(frontend: Endpoint, backend: Endpoint, dialect: Dialect, onRecord: (r: TraceRecord) => void) {
    this.#frontend = frontend;
    this.#backend = backend;
    this.#dialect = dialect;
    this.#onRecord = onRecord;
  }

  /** Milliseconds since the session started. */
  get elapsedMs(): number {
    return performance.now() - this.#start;
  }

  /** Relays until either side closes (or {@link TraceSession.stop}); resolves with why it ended. */
  async run(): Promise<string> {
    const endSession = (why: string) => this.stop(why);
    this.#pumps.push(
      this.#pump(this.#frontend, this.#backend, "main", "frontend", endSession),
      this.#pump(this.#backend, this.#frontend, "main", "backend", endSession),
    );
    // Pumps are added while running (the back-end channel): wait until every one has finished.
    for (let n = 0; n < this.#pumps.length; n++) await this.#pumps[n];
    return this.#end ?? "ended";
  }

  /** Ends the session: closes every endpoint (the pumps then finish). Idempotent. */
  stop(reason: string): void {
    this.#end ??= reason;
    this.#frontend.close();
    this.#backend.close();
    this.#channel?.frontend.close();
    this.#channel?.backend.close();
  }

  /**
   * Relays `from` to `to` until either fails; then `onEnd` (the main socket ends the session, the
   * back-end channel only closes that channel: a front-end may set up a new one).
   */
  async #pump(from: Endpoint, to: Endpoint, channel: ChannelName, sender: Side, onEnd: (why: string) => void): Promise<void> {
    for (;;) {
      let m: ReceivedMessage;
      try {
        m = await from.recv();
      } catch (err) {
        onEnd(
          `the ${sender === "frontend" ? "front-end" : "back-end"} closed ${channel === "main" ? "the connection" : "the back-end channel"} (${err instanceof Error ? err.message : String(err)})`,
        );
        return;
      }
      try {
        this.#record(m, channel, sender);
        await this.#forward(m, to, channel, sender);
      } catch (err) {
        onEnd(`relaying to the ${sender === "frontend" ? "back-end" : "front-end"} failed (${err instanceof Error ? err.message : String(err)})`);
        return;
      } finally {
        // Every received fd is closed exactly once, after sending gave the peer its own copy
        // (an fd handed to an endpoint was transferred and closing it here does nothing).
        for (const fd of m.fds) fd.close();
      }
    }
  }

  #record(m: ReceivedMessage, channel: ChannelName, sender: Side): void {
    const wire = channel === "main" ? "frontend" : "backend";
    const now = this.elapsedMs;
    const d = describeFrame(wire, m.frame, this.#dialect);
    const key = `${channel} ${m.request}`;
    let latencyMs: number | undefined;
    if (d.reply) {
      const sent = this.#pending.get(key)?.shift();
      if (sent !== undefined) latencyMs = Math.round((now - sent) * 1000) / 1000;
    } else {
      const spec = tryMessageSpec(wire, m.request, this.#dialect);
      if ((m.flags & HeaderFlag.NEED_REPLY) !== 0 || (spec !== undefined && alwaysReplied(spec))) {
        const q = this.#pending.get(key);
        if (q === undefined) this.#pending.set(key, [now]);
        else q.push(now);
      }
      if (channel === "main" && m.request === FrontendRequest.SET_PROTOCOL_FEATURES && m.payload.byteLength === 8) {
        this.#dialect = dialectAfter(new DataView(m.payload.buffer, m.payload.byteOffset, 8).getBigUint64(0, true), this.#dialect);
      }
    }
    this.#onRecord({ t: Math.round(now * 1000) / 1000, channel, from: sender, ...d, fds: m.fds.length, ...(latencyMs === undefined ? {} : { latencyMs }) });
  }

  async #forward(m: ReceivedMessage, to: Endpoint, channel: ChannelName, sender: Side): Promise<void> {
    const isChannelSetup =
      channel === "main" && sender === "frontend" && m.request === FrontendRequest.SET_BACKEND_REQ_FD && !(m.flags & HeaderFlag.REPLY) && m.fds.length === 1;
    if (!isChannelSetup) {
      await to.send(
        m.request,
        m.flags,
        m.payload,
        m.fds.map((f) => f.fd),
      );
      return;
    }
    // The front-end's end of its channel stays here; the back-end gets one end of a socketpair of
    // the proxy's, whose other end is relayed to the front-end's.
    const [mine, theirs] = socketPair();
    try {
      const previous = this.#channel;
      this.#channel = {
        frontend: new Endpoint(new OwnedFd((m.fds[0] as OwnedFd).transfer()), RELAY_ENDPOINT_OPTIONS),
        backend: new Endpoint(mine, RELAY_ENDPOINT_OPTIONS),
      };
      previous?.frontend.close();
      previous?.backend.close();
      await to.send(m.request, m.flags, m.payload, [theirs.fd]);
    } finally {
      theirs.close(); // the back-end has its own copy now
    }
    const ch = this.#channel;
    const closeChannel = () => {
      ch.frontend.close();
      ch.backend.close();
    };
    this.#pumps.push(
      this.#pump(ch.backend, ch.frontend, "backend", "backend", closeChannel),
      this.#pump(ch.frontend, ch.backend, "backend", "frontend", closeChannel),
    );
  }
}
