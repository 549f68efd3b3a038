/**
 * The opt-in hostile section of `vhost-user-device check --hostile`: malformed requests a
 * back-end must refuse (or answer by closing the connection) without crashing
 * (docs/protocol.md#what-the-back-end-refuses), each on a connection of its own, followed by a
 * check that the back-end still serves a new connection.
 * @module
 */
import { connect, EventFd, type Endpoint, type ReceivedMessage } from "@vhostkit/transport";
import { FrontendRequest, HeaderFlag, ProtocolFeature, VirtioFeature } from "@vhostkit/wire";
import type { CheckResult } from "./check-result.js";
import type { DeviceOptions } from "./device-options.js";

/** One message of a hostile case. */
export interface HostileStep {
  /** Request id (u32) of the front-end channel. */
  readonly request: number;
  /** Payload bytes as sent. */
  readonly payload: Uint8Array;
  /** Attach a fresh eventfd (a kick). */
  readonly eventFd?: boolean;
}

/**
 * One case of the hostile section: the messages sent in order with NEED_REPLY; the back-end must
 * refuse one of them or close the connection.
 */
export interface HostileRequest {
  /** Check name, `hostile: ...`. */
  readonly name: string;
  /** What is wrong, for the report. */
  readonly what: string;
  /** The messages. */
  readonly steps: readonly HostileStep[];
}

function u64(v: bigint): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, v, true);
  return b;
}

function vringState(index: number, num: number): Uint8Array {
  const b = new Uint8Array(8);
  const v = new DataView(b.buffer);
  v.setUint32(0, index, true);
  v.setUint32(4, num, true);
  return b;
}

/** A SET_VRING_ADDR payload whose rings lie at `addr` (no memory table was ever sent). */
function vringAddr(index: number, addr: bigint): Uint8Array {
  const b = new Uint8Array(40);
  const v = new DataView(b.buffer);
  v.setUint32(0, index, true);
  for (const off of [8, 16, 24]) v.setBigUint64(off, addr, true);
  return b;
}

/** A GET_CONFIG payload asking `size` bytes at offset 0 (header: offset, size, flags; then `size` zeros). */
function configRequest(size: number): Uint8Array {
  const b = new Uint8Array(12 + size);
  new DataView(b.buffer).setUint32(4, size, true);
  return b;
}

/** The malformed requests, each sent with NEED_REPLY after a minimal handshake. */
export const HOSTILE_REQUESTS: readonly HostileRequest[] = [
  {
    name: "hostile: payload size",
    what: "SET_VRING_NUM with a 4-byte payload (8 expected)",
    steps: [{ request: FrontendRequest.SET_VRING_NUM, payload: new Uint8Array(4) }],
  },
  { name: "hostile: unknown request", what: "request id 0x7e57", steps: [{ request: 0x7e57, payload: new Uint8Array(0) }] },
  {
    name: "hostile: missing fd",
    what: "SET_VRING_KICK for queue 0 with no fd and the no-fd bit clear",
    steps: [{ request: FrontendRequest.SET_VRING_KICK, payload: u64(0n) }],
  },
  {
    name: "hostile: queue index",
    what: "SET_VRING_NUM for queue 0xffff",
    steps: [{ request: FrontendRequest.SET_VRING_NUM, payload: vringState(0xffff, 64) }],
  },
  {
    name: "hostile: ring address",
    what: "queue 0 set up with its rings at 0xdead0000, outside any memory table, and kicked",
    steps: [
      { request: FrontendRequest.SET_VRING_NUM, payload: vringState(0, 64) },
      { request: FrontendRequest.SET_VRING_ADDR, payload: vringAddr(0, 0xdead0000n) },
      { request: FrontendRequest.SET_VRING_KICK, payload: u64(0n), eventFd: true },
    ],
  },
  {
    name: "hostile: config size",
    what: "GET_CONFIG of 4096 bytes (256 at most)",
    steps: [{ request: FrontendRequest.GET_CONFIG, payload: configRequest(4096) }],
  },
];

/**
 * Connect retries: a back-end that serves one front-end at a time may take a moment to listen
 * again after the previous connection (vhost-device-vsock binds its socket anew).
 */
const RECONNECT = { attempts: 40, delayMs: 25 } as const;

/** Largest payload the hostile cases send (GET_CONFIG of 4096 bytes). */
const HOSTILE_MAX_PAYLOAD = 12 + 4096;

/** `p`, or `undefined` once `ms` have passed. */
async function within<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([p, new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/** The next message, `"closed"` when the back-end hung up, `undefined` when nothing came in time. Received fds are closed. */
async function next(ep: Endpoint, ms: number): Promise<ReceivedMessage | "closed" | undefined> {
  const m = await within(
    ep.recv().catch(() => "closed" as const),
    ms,
  );
  if (m !== undefined && m !== "closed") for (const fd of m.fds) fd.close();
  return m;
}

/** GET_FEATURES, then protocol features with REPLY_ACK when offered, then SET_OWNER. @returns whether REPLY_ACK is on. */
async function handshake(ep: Endpoint, ms: number): Promise<boolean> {
  await ep.send(FrontendRequest.GET_FEATURES, HeaderFlag.VERSION);
  const f = await next(ep, ms);
  if (f === undefined || f === "closed" || f.payload.byteLength !== 8) throw new Error("no answer to GET_FEATURES");
  let replyAck = false;
  if ((new DataView(f.payload.buffer, f.payload.byteOffset, 8).getBigUint64(0, true) & VirtioFeature.PROTOCOL_FEATURES) !== 0n) {
    await ep.send(FrontendRequest.GET_PROTOCOL_FEATURES, HeaderFlag.VERSION);
    const p = await next(ep, ms);
    if (p === undefined || p === "closed" || p.payload.byteLength !== 8) throw new Error("no answer to GET_PROTOCOL_FEATURES");
    replyAck = (new DataView(p.payload.buffer, p.payload.byteOffset, 8).getBigUint64(0, true) & ProtocolFeature.REPLY_ACK) !== 0n;
    await ep.send(FrontendRequest.SET_PROTOCOL_FEATURES, HeaderFlag.VERSION, u64(replyAck ? ProtocolFeature.REPLY_ACK : 0n));
  }
  await ep.send(FrontendRequest.SET_OWNER, HeaderFlag.VERSION);
  return replyAck;
}

/** The answer to one step: refused, closed, accepted, or `undefined` (nothing in time). */
async function answer(
  ep: Endpoint,
  request: number,
  ms: number,
): Promise<{ readonly verdict: "refused" | "closed" | "accepted" | "other" | "silent"; readonly how: string }> {
  const r = await next(ep, ms);
  if (r === "closed") return { verdict: "closed", how: "closed the connection" };
  if (r === undefined) return { verdict: "silent", how: `no answer within ${ms} ms` };
  if (r.request !== request || (r.flags & HeaderFlag.REPLY) === 0) return { verdict: "other", how: `answered request ${r.request} instead` };
  if (r.payload.byteLength === 0) return { verdict: "refused", how: "refused with a zero-size reply" };
  const status = r.payload.byteLength === 8 ? new DataView(r.payload.buffer, r.payload.byteOffset, 8).getBigUint64(0, true) : -1n;
  return status === 0n ? { verdict: "accepted", how: "accepted (status 0)" } : { verdict: "refused", how: `refused (status 0x${status.toString(16)})` };
}

/** The connection failed before the hostile message went out: worth another connection. */
class SetupFailed extends Error {}

/** Sends the steps of `h` after a handshake and classifies what the back-end did. */
async function tryOne(socketPath: string, h: HostileRequest, ms: number): Promise<{ readonly ok: boolean; readonly how: string }> {
  const ep = await connect(socketPath, { maxPayload: HOSTILE_MAX_PAYLOAD, retry: RECONNECT });
  try {
    const replyAck = await handshake(ep, ms).catch((e: unknown) => Promise.reject(new SetupFailed(`handshake: ${e instanceof Error ? e.message : String(e)}`)));
    for (const [i, step] of h.steps.entries()) {
      const at = h.steps.length > 1 ? ` at message ${i + 1} of ${h.steps.length}` : "";
      const kick = step.eventFd === true ? EventFd.create() : undefined;
      try {
        await ep.send(step.request, HeaderFlag.VERSION | HeaderFlag.NEED_REPLY, step.payload, kick === undefined ? [] : [kick.fd]).catch(() => undefined);
      } finally {
        kick?.close(); // the back-end has its own copy
      }
      // Without REPLY_ACK no status comes: a GET_FEATURES behind it shows whether the back-end went on.
      if (!replyAck) await ep.send(FrontendRequest.GET_FEATURES, HeaderFlag.VERSION).catch(() => undefined);
      const a = await answer(ep, replyAck ? step.request : FrontendRequest.GET_FEATURES, ms);
      if (a.verdict === "refused" || a.verdict === "closed") return { ok: true, how: `${a.how}${at}` };
      if (a.verdict !== "accepted" && replyAck) return { ok: false, how: `${a.how}${at}` };
    }
    return { ok: false, how: replyAck ? "accepted every message" : "went on answering (no REPLY_ACK to refuse with)" };
  } finally {
    ep.close();
  }
}

/** A new connection answers GET_FEATURES. @throws SetupFailed when it is closed at once. */
async function answersGetFeatures(path: string, ms: number): Promise<boolean> {
  const ep = await connect(path, { retry: RECONNECT });
  try {
    await ep.send(FrontendRequest.GET_FEATURES, HeaderFlag.VERSION).catch(() => Promise.reject(new SetupFailed("closed before GET_FEATURES")));
    const m = await next(ep, ms);
    if (m === "closed") throw new SetupFailed("closed before answering GET_FEATURES");
    return m !== undefined;
  } finally {
    ep.close();
  }
}

/**
 * `run` again (up to five times, 50 ms apart) while it fails before the hostile part: a back-end
 * that serves one front-end at a time may still be tearing the previous connection down.
 */
async function settled<T>(run: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await run();
    } catch (err) {
      if (!(err instanceof SetupFailed) || attempt >= 5) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/**
 * Runs every {@link HOSTILE_REQUESTS} case on a fresh connection to `options.socketPath`: each
 * passes when the back-end refuses the request or closes the connection and then still accepts a
 * new connection and answers GET_FEATURES; it fails when the back-end accepts the request, does not
 * answer, or is gone.
 */
export async function runHostileChecks(options: DeviceOptions): Promise<CheckResult[]> {
  const out: CheckResult[] = [];
  const path = options.socketPath;
  if (path === undefined) return [{ name: "hostile", status: "skip", reason: "needs a socket path (each case opens a new connection)" }];
  const ms = Math.min(options.timeoutMs ?? 5000, 2000);
  let gone: string | undefined;
  for (const h of HOSTILE_REQUESTS) {
    if (gone !== undefined) {
      out.push({ name: h.name, status: "skip", reason: `the back-end serves no connection any more (since "${gone}")` });
      continue;
    }
    try {
      const r = await settled(() => tryOne(path, h, ms));
      const alive = await settled(() => answersGetFeatures(path, ms)).catch(() => false);
      if (!alive) {
        gone = h.name;
        out.push({ name: h.name, status: "fail", reason: `${h.what}: the back-end ${r.how}, then served no new connection` });
      } else
        out.push({ name: h.name, status: r.ok ? "pass" : "fail", reason: `${h.what}: the back-end ${r.how}${r.ok ? "; a new connection is served" : ""}` });
    } catch (err) {
      out.push({ name: h.name, status: "fail", reason: `${h.what}: ${err instanceof Error ? err.message : String(err)}` });
    }
  }
  return out;
}
