/**
 * A device's reconnect path (docs/protocol.md#inflight-tracking-and-reconnect): when its back-end
 * is lost, connect to the same socket again, negotiate the same features, and restart the rings
 * where they were. The device provides what this needs through {@link ReconnectHost}.
 * @module
 */
import { VirtioFeature } from "@vhostkit/wire";
import { callHook } from "@vhostkit/transport";
import type { DeviceSharedMemory } from "@vhostkit/regions";
import type { BackendLink, LinkHost } from "./backend-link.js";
import type { DeviceDirtyLog } from "./device-dirty-log.js";
import type { DeviceOptions } from "./device-options.js";
import type { DriverQueue } from "./driver-queue.js";
import { asFrontendError, FrontendError, isFrontendError } from "./errors.js";
import { Frontend } from "./frontend.js";
import { hasFeatures, negotiate, type DeviceInfo, type Negotiated, type ShmemPlacement } from "./negotiation.js";
import { retryWithBackoff, type ReconnectEvent } from "./reconnect.js";
import { sendRing } from "./ring-setup.js";

/** What a reconnect needs of its device (its device provides it). @internal */
export interface ReconnectHost {
  /** The options the device was opened with: socket path, reconnect policy, trace. */
  readonly options: DeviceOptions;
  /** Reply timeout of the new connection. */
  readonly timeoutMs: number;
  /** The guest: RAM, shared memory, the guest-physical space and its placement of windows. */
  readonly guest: LinkHost & ShmemPlacement;
  /** What the back-end advertised (dialect, acknowledged protocol features). */
  readonly info: DeviceInfo;
  /** The device's shared memory regions, kept across back-ends. */
  readonly regions: DeviceSharedMemory | undefined;
  /** The virtio features sent with SET_FEATURES, or `undefined` before the device started. */
  readonly ackedFeatures: bigint | undefined;
  /** The current back-end link. */
  readonly link: BackendLink;
  /** The device's started queues. */
  readonly queues: ReadonlyMap<number, DriverQueue>;
  /** The device's dirty page logging: a restarted back-end logs too while it is on. */
  readonly dirtyLog: DeviceDirtyLog;
  /** The device is closing: a reconnect under way gives up. */
  readonly closing: boolean;
  /** Takes over a negotiated connection (replaces {@link ReconnectHost.link}). */
  attach(fe: Frontend, negotiated: Negotiated): void;
  /** Hands the inflight area to the back-end when INFLIGHT_SHMFD is negotiated. @returns whether it did. */
  handInflight(queueSize: number): Promise<boolean>;
  /** Fails the device. */
  fail(err: FrontendError): void;
}

/** Outcome of one successful reconnect, as reported in {@link ReconnectEvent}. */
interface RestartOutcome {
  outstanding: number;
  inflight: boolean;
}

/**
 * The reconnects of one device: the one under way, the count of those that succeeded, and their
 * listeners.
 * @internal
 */
export class DeviceReconnect {
  readonly #host: ReconnectHost;
  /** The reconnect under way, if any. */
  #pending: Promise<void> | undefined;
  #count = 0;
  readonly #listeners = new Set<(event: ReconnectEvent) => void>();

  /** A device's reconnect path, through `host`. */
  constructor(host: ReconnectHost) {
    this.#host = host;
  }

  /** The reconnect under way (it never rejects), or `undefined`. */
  get pending(): Promise<void> | undefined {
    return this.#pending;
  }

  /** Successful reconnects so far. */
  get count(): number {
    return this.#count;
  }

  /** Subscribes to reconnects. @returns an unsubscribe function. */
  onReconnect(listener: (event: ReconnectEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Starts a reconnect after the back-end was lost (`cause`); see {@link DeviceReconnect.pending}. */
  begin(cause: FrontendError): void {
    this.#pending = this.#reconnect(cause);
  }

  /**
   * The back-end was lost (`cause`) and the device has a reconnect policy: the back-end's
   * connection and shared-memory mappings go (out of every other back-end's table too), the rings
   * pause, and the device connects to the same socket again per the policy until a new back-end
   * took over; listeners then hear of it. Giving up (`RECONNECT_FAILED`, `FEATURES_WITHDRAWN`,
   * a refusal) fails the device.
   */
  async #reconnect(cause: FrontendError): Promise<void> {
    const host = this.#host;
    const lostAt = performance.now();
    host.link.detach();
    for (const q of host.queues.values()) q.pause();
    let outcome: RestartOutcome = { outstanding: 0, inflight: false };
    try {
      const attempts = await retryWithBackoff(
        host.options.reconnect ?? {},
        async () => void (outcome = await this.#reattach()),
        () => host.closing,
        (e) => isFrontendError(e) && (e.code === "DISCONNECTED" || e.code === "TIMEOUT"),
      );
      this.#count++;
      this.#pending = undefined;
      const event: ReconnectEvent = { count: this.#count, attempts, downtimeMs: performance.now() - lostAt, cause, ...outcome };
      for (const listener of this.#listeners) callHook(listener, event);
    } catch (err) {
      this.#pending = undefined;
      if (!host.closing) host.fail(asFrontendError(err, "RECONNECT"));
    }
  }

  /**
   * One reconnect attempt: connects, negotiates the same features again (the acknowledged ones must
   * still be offered), takes the connection over and restarts what ran.
   * @throws FrontendError `DISCONNECTED` / `TIMEOUT` (the next attempt follows), `FEATURES_WITHDRAWN`, or as {@link negotiate}.
   */
  async #reattach(): Promise<RestartOutcome> {
    const host = this.#host;
    const dialect = host.info.dialect;
    const trace = host.options.trace === undefined ? {} : { trace: host.options.trace };
    const fe = await Frontend.connect(host.options.socketPath as string, { dialect, timeoutMs: host.timeoutMs, ...trace });
    let negotiated: Negotiated | undefined;
    try {
      negotiated = await negotiate(fe, host.options, dialect, host.guest, { ackedProtocolFeatures: host.info.ackedProtocolFeatures, regions: host.regions });
      // While logging, the new back-end must log too: LOG_ALL counts as acknowledged.
      const required = (host.ackedFeatures ?? 0n) | (host.dirtyLog.logging ? VirtioFeature.LOG_ALL : 0n);
      const missing = required & ~negotiated.info.features;
      if (missing !== 0n)
        throw new FrontendError("FEATURES_WITHDRAWN", `the restarted back-end no longer offers features 0x${missing.toString(16)}`, {
          request: "GET_FEATURES",
          expected: required,
          actual: negotiated.info.features,
        });
    } catch (err) {
      negotiated?.channel?.close();
      fe.close();
      throw asFrontendError(err, "NEGOTIATE");
    }
    host.attach(fe, negotiated);
    try {
      return await this.#restart();
    } catch (err) {
      host.link.detach();
      throw err;
    }
  }

  /**
   * A new back-end takes over: while logging SET_LOG_BASE with the same log, SET_FEATURES as before
   * (with LOG_ALL while logging), the memory table, the inflight area (SET_INFLIGHT_FD), then each
   * ring from the used index with the outstanding chains laid out again
   * ({@link DriverQueue.prepareRestart}; the log flag while logging), enabled, kicked.
   */
  async #restart(): Promise<RestartOutcome> {
    const host = this.#host;
    const features = host.ackedFeatures;
    if (features === undefined) return { outstanding: 0, inflight: false }; // never started: nothing to restore
    const { fe, mirror, port } = host.link;
    const logging = await host.dirtyLog.resume(fe);
    await fe.setFeatures(logging ? features | VirtioFeature.LOG_ALL : features);
    await mirror.send(host.guest.sharedMemory.mappingsFor(port));
    const queues = [...host.queues.values()];
    const inflight = await host.handInflight(Math.max(0, ...queues.map((q) => q.size)));
    let outstanding = 0;
    for (const q of queues) {
      const { base, outstanding: n } = q.prepareRestart(inflight);
      outstanding += n;
      await sendRing(fe, host.guest.ram, q, base, logging);
    }
    if (hasFeatures(features, VirtioFeature.PROTOCOL_FEATURES)) for (const q of queues) await fe.setVringEnable(q.index, true);
    for (const q of queues) q.resume();
    return { outstanding, inflight };
  }
}
