/**
 * Reconnecting a device to a restarted back-end (docs/protocol.md#inflight-tracking-and-reconnect):
 * the policy (how long to wait, how often to try), the event the caller sees once per reconnect,
 * and the inflight area the front-end keeps between back-end processes.
 * @module
 */
import type { OwnedFd } from "@vhostkit/transport";
import type { InflightInfo } from "@vhostkit/wire";
import { FrontendError } from "./errors.js";
import type { Frontend } from "./frontend.js";

/**
 * When a device's back-end dies (its socket reaches EOF or is reset), the device keeps guest memory
 * and its rings and tries to connect to the same socket again: the first attempt after
 * `initialDelayMs`, each later one after twice the previous delay, at most `maxDelayMs`, for
 * `attempts` attempts in all. Waiting never blocks the event loop.
 */
export interface ReconnectPolicy {
  /** Delay before the first attempt, milliseconds (default 50). */
  readonly initialDelayMs?: number;
  /** Longest delay between two attempts, milliseconds (default 2000). */
  readonly maxDelayMs?: number;
  /** Attempts before the device fails with `RECONNECT_FAILED` (default 100). */
  readonly attempts?: number;
}

/** What {@link Device.onReconnect} listeners get, once per successful reconnect. */
export interface ReconnectEvent {
  /** Reconnects of this device so far, this one included. */
  readonly count: number;
  /** Connection attempts this reconnect took. */
  readonly attempts: number;
  /** Milliseconds from losing the back-end to the restarted rings. */
  readonly downtimeMs: number;
  /** Why the back-end was considered lost. */
  readonly cause: FrontendError;
  /** INFLIGHT_SHMFD is negotiated: the new back-end got the inflight area (SET_INFLIGHT_FD). */
  readonly inflight: boolean;
  /** Requests that were outstanding when the back-end was lost (they complete on the new one). */
  readonly outstanding: number;
}

/** The delays of `policy`, one per attempt, in milliseconds. @internal */
export function reconnectDelays(policy: ReconnectPolicy): number[] {
  const initial = policy.initialDelayMs ?? 50;
  const max = policy.maxDelayMs ?? 2000;
  const attempts = policy.attempts ?? 100;
  for (const [name, v] of [
    ["initialDelayMs", initial],
    ["maxDelayMs", max],
    ["attempts", attempts],
  ] as const) {
    if (!Number.isFinite(v) || v < 0 || (name === "attempts" && (!Number.isInteger(v) || v < 1)))
      throw new FrontendError("BAD_ARGUMENT", `reconnect.${name} ${v} is invalid`, { actual: v });
  }
  const out: number[] = [];
  for (let i = 0, d = initial; i < attempts; i++, d = Math.min(max, Math.max(1, d * 2))) out.push(Math.min(d, max));
  return out;
}

/** Resolves after `ms` milliseconds, or as soon as `cancelled()` is seen true (checked every 20 ms). @internal */
export async function pause(ms: number, cancelled: () => boolean): Promise<void> {
  const until = performance.now() + ms;
  while (!cancelled()) {
    const left = until - performance.now();
    if (left <= 0) return;
    await new Promise((r) => setTimeout(r, Math.min(left, 20)));
  }
}

/**
 * Runs `attempt` after each delay of `policy` until one succeeds. An error `retryable` rejects
 * leads to the next attempt; any other ends the loop at once, as does `cancelled()`.
 * @returns the number of attempts made.
 * @throws FrontendError `RECONNECT_FAILED` (the last error as `cause`) when every attempt failed,
 *   `CLOSED` when cancelled, or the first error that is not retryable.
 * @internal
 */
export async function retryWithBackoff(
  policy: ReconnectPolicy,
  attempt: () => Promise<void>,
  cancelled: () => boolean,
  retryable: (err: unknown) => boolean,
): Promise<number> {
  const delays = reconnectDelays(policy);
  let last: unknown;
  for (const [i, delay] of delays.entries()) {
    await pause(delay, cancelled);
    if (cancelled()) throw new FrontendError("CLOSED", "device closed while reconnecting", { request: "RECONNECT" });
    try {
      await attempt();
      return i + 1;
    } catch (err) {
      if (!retryable(err)) throw err;
      last = err;
    }
  }
  const why = last instanceof Error ? last.message : String(last);
  throw new FrontendError(
    "RECONNECT_FAILED",
    `back-end not back after ${delays.length} attempts: ${why}`,
    { request: "RECONNECT", expected: delays.length },
    { cause: last },
  );
}

/**
 * The inflight area of a device (INFLIGHT_SHMFD): asked of the first back-end with GET_INFLIGHT_FD
 * when the rings first start, handed to it and to every later back-end process with
 * SET_INFLIGHT_FD, so a restarted back-end finds the requests its predecessor had taken. Owns the
 * fd until {@link InflightArea.close}.
 * @internal
 */
export class InflightArea {
  #fd: OwnedFd | undefined;
  #info: InflightInfo | undefined;

  /** Descriptors per queue of the area, `undefined` before the first GET_INFLIGHT_FD. */
  get queueSize(): number | undefined {
    return this.#info?.queueSize;
  }

  /**
   * Before rings start: GET_INFLIGHT_FD for `numQueues` queues of `queueSize` descriptors the first
   * time, then SET_INFLIGHT_FD with the area. A back-end that answers "no area" (`mmap_size` 0) gets
   * nothing more: its rings are untracked.
   * @returns whether the back-end now tracks into the area.
   * @throws FrontendError `BAD_ARGUMENT` when rings larger than the area's queues start later, or as
   *   {@link Frontend.call} / {@link Frontend.ack}.
   */
  async hand(fe: Frontend, numQueues: number, queueSize: number): Promise<boolean> {
    if (this.#info === undefined) {
      const { info, fd } = await fe.getInflightFd(numQueues, queueSize);
      if (fd === undefined) return false;
      this.#fd = fd;
      this.#info = info;
    } else if (queueSize > this.#info.queueSize) {
      throw new FrontendError("BAD_ARGUMENT", `queue size ${queueSize} exceeds the inflight area's ${this.#info.queueSize}`, {
        expected: this.#info.queueSize,
        actual: queueSize,
      });
    }
    await fe.setInflightFd(this.#info, (this.#fd as OwnedFd).fd);
    return true;
  }

  /** True once an area was obtained. */
  get obtained(): boolean {
    return this.#info !== undefined;
  }

  /** Closes the fd; the next {@link InflightArea.hand} asks for a new area. Idempotent. */
  close(): void {
    this.#fd?.close();
    this.#fd = undefined;
    this.#info = undefined;
  }
}
