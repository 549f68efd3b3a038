/**
 * A device's dirty page logging (docs/protocol.md#dirty-page-logging): whether it is on, and the
 * requests that turn it on and off for the rings that run. The device provides what this needs
 * through {@link DirtyLogHost}.
 * @module
 */
import { ProtocolFeature, VirtioFeature } from "@vhostkit/wire";
import type { GuestRam } from "@vhostkit/regions";
import { type DirtyLogOptions, DirtyPageLog, ramEnd, sendDirtyLogging } from "./dirty-log.js";
import type { DriverQueue } from "./driver-queue.js";
import { FrontendError } from "./errors.js";
import type { Frontend } from "./frontend.js";
import { hasFeatures, type DeviceInfo } from "./negotiation.js";

/** What dirty page logging needs of its device (its device provides it). @internal */
export interface DirtyLogHost {
  /** The guest: its RAM is what the log covers. */
  readonly guest: { readonly ram: GuestRam };
  /** What the back-end advertised (features offered, protocol features acknowledged). */
  readonly info: DeviceInfo;
  /** The virtio features sent with SET_FEATURES, or `undefined` before the device started. */
  readonly ackedFeatures: bigint | undefined;
  /** The current back-end connection. */
  readonly link: { readonly fe: Frontend };
  /** The device's started queues. */
  readonly queues: ReadonlyMap<number, DriverQueue>;
}

/** The dirty page logging of one device. @internal */
export class DeviceDirtyLog {
  readonly #host: DirtyLogHost;
  #logging = false;
  /** The log handed over while logging (the caller owns it), and whether SET_LOG_FD went with it. */
  #log: DirtyPageLog | undefined;
  #sendLogFd = false;

  /** A device's dirty page logging, through `host`; off. */
  constructor(host: DirtyLogHost) {
    this.#host = host;
  }

  /** Logging is on: rings started now log too. */
  get logging(): boolean {
    return this.#logging;
  }

  /**
   * Turns logging on: a new {@link DirtyPageLog} for guest RAM, SET_LOG_BASE with it (SET_LOG_FD
   * too with `options.sendLogFd`), SET_FEATURES with VHOST_F_LOG_ALL, SET_VRING_ADDR with
   * VHOST_VRING_F_LOG on every started ring. The caller owns the log.
   * @throws FrontendError `BAD_ARGUMENT` (not started, or already logging), `NEGOTIATION`, or as the requests.
   */
  async start(options: DirtyLogOptions): Promise<DirtyPageLog> {
    const host = this.#host;
    const features = host.ackedFeatures;
    if (features === undefined || this.#logging)
      throw new FrontendError("BAD_ARGUMENT", features === undefined ? "dirty log: start the device first" : "dirty log: already logging");
    if (!hasFeatures(host.info.features, VirtioFeature.LOG_ALL) || !hasFeatures(host.info.ackedProtocolFeatures, ProtocolFeature.LOG_SHMFD))
      throw new FrontendError("NEGOTIATION", "dirty log: the back-end needs VHOST_F_LOG_ALL offered and LOG_SHMFD acknowledged", { request: "SET_LOG_BASE" });
    const log = DirtyPageLog.create(ramEnd(host.guest.ram));
    try {
      await sendDirtyLogging(host.link.fe, host.guest.ram, host.queues.values(), features, log, options.sendLogFd === true);
    } catch (err) {
      log.dispose();
      throw err;
    }
    this.#logging = true;
    this.#log = log;
    this.#sendLogFd = options.sendLogFd === true;
    return log;
  }

  /** Turns logging off: SET_FEATURES without LOG_ALL, SET_VRING_ADDR without the log flag. Nothing when off. @throws FrontendError as the requests. */
  async stop(): Promise<void> {
    const host = this.#host;
    if (!this.#logging || host.ackedFeatures === undefined) return;
    this.#logging = false;
    this.#log = undefined;
    await sendDirtyLogging(host.link.fe, host.guest.ram, host.queues.values(), host.ackedFeatures, undefined);
  }

  /**
   * A restarted back-end takes over while logging: SET_LOG_BASE with the same log (SET_LOG_FD too
   * when it went the first time), before SET_FEATURES and the rings, so the new back-end marks
   * from its first write, as QEMU's `vhost_dev_start` re-arms a log after a reconnect. A log the
   * caller disposed meanwhile turns logging off instead (nothing would read its marks).
   * @returns whether logging goes on (the caller then sends LOG_ALL and the rings' log flag).
   * @throws FrontendError as the requests.
   */
  async resume(fe: Frontend): Promise<boolean> {
    const log = this.#log;
    if (!this.#logging || log === undefined) return false;
    let fd: number;
    try {
      fd = log.fd;
    } catch {
      this.#logging = false;
      this.#log = undefined;
      return false;
    }
    await fe.call("SET_LOG_BASE", { mmapSize: log.size, mmapOffset: 0n }, [fd]);
    if (this.#sendLogFd) await fe.ack("SET_LOG_FD", undefined, [log.eventFd.fd]);
    return true;
  }
}
