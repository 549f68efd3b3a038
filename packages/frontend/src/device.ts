/**
 * One vhost-user device driven by the front-end, over its life: opened and negotiated
 * (`negotiation.ts`), started (features, memory table, vrings), stopped, failed, closed. Its
 * back-end's memory table follows the guest's shared memory through `memory-table-mirror.ts` and
 * `guest-shared-memory.ts`; a lost back-end is replaced by `device-reconnect.ts`; dirty page
 * logging is `device-dirty-log.ts`.
 * @module
 */
import { ProtocolFeature, VirtioFeature } from "@vhostkit/wire";
import { callHook } from "@vhostkit/transport";
import type { DeviceSharedMemory, GuestAddress, GuestAddressSpace, GuestRam } from "@vhostkit/regions";
import { BackendLink } from "./backend-link.js";
import type { DirtyLogOptions, DirtyPageLog } from "./dirty-log.js";
import { DeviceDirtyLog, type DirtyLogHost } from "./device-dirty-log.js";
import { DRIVER_FEATURE_MASK, type DeviceOptions, type StartOptions } from "./device-options.js";
import { DeviceReconnect, type ReconnectHost } from "./device-reconnect.js";
import { DriverQueue } from "./driver-queue.js";
import { asFrontendError, FrontendError, isConnectionLost, isFrontendError } from "./errors.js";
import { Frontend } from "./frontend.js";
import type { GuestAllocator } from "./guest-allocator.js";
import type { DeviceSharedMemoryPort, GuestSharedMemory } from "./guest-shared-memory.js";
import type { MemoryTableMirror } from "./memory-table-mirror.js";
import { hasFeatures, negotiate, resolveDialect, type DeviceInfo, type Negotiated } from "./negotiation.js";
import { InflightArea, type ReconnectEvent } from "./reconnect.js";
import { sendRing } from "./ring-setup.js";

/** What a device needs of the guest it belongs to (a {@link Guest} provides it). @internal */
export interface DeviceHost {
  /** Guest RAM: the rings and buffers, and the first entries of every memory table. */
  readonly ram: GuestRam;
  /** The whole guest-physical space: what drivers and MEM_READ/MEM_WRITE reach; the device's regions join it. */
  readonly space: GuestAddressSpace;
  /** Allocator of rings and request buffers in RAM. */
  readonly allocator: GuestAllocator;
  /** Every device's shared memory and back-end memory table, for propagation. */
  readonly sharedMemory: GuestSharedMemory;
  /** Reserves guest-physical space for a device window of `size` bytes. */
  placeShmem(size: bigint): GuestAddress;
  /** Forgets a closed device. */
  detach(device: Device): void;
}

/**
 * One vhost-user device. Created (and negotiated, steps 1–4 of docs/protocol.md#negotiation-order) by
 * {@link Guest.addDevice}; {@link Device.start} runs steps 5–9 (features, memory table, vrings,
 * enable, first kick), {@link Device.stop} step 10, {@link Device.close} stops, resets and releases.
 *
 * With a {@link DeviceOptions.reconnect} policy a back-end that dies (EOF or reset on either
 * socket) is replaced: the device connects again and restarts its rings where they were, and
 * {@link Device.onReconnect} listeners hear of it once per reconnect (docs/protocol.md#inflight-tracking-and-reconnect).
 * Otherwise, when the back-end dies (its channel reaches EOF, a request fails at the transport level or
 * times out) the device is marked failed: {@link Device.failure} resolves with a typed
 * {@link FrontendError}, pending requests reject with `DEVICE_FAILED`, its shared memory mappings
 * are dropped (PROT_NONE reservations stay until close). Other devices of the guest are not affected.
 */
export class Device {
  readonly #host: DeviceHost;
  /** The current back-end: connection, memory-table mirror, shared-memory port, channel handler (replaced by a reconnect). */
  #link!: BackendLink;
  readonly #options: DeviceOptions;
  readonly #timeoutMs: number;
  #info: DeviceInfo;
  /** The device's shared memory regions, until it is closed. */
  #regions: DeviceSharedMemory | undefined;
  #memRw!: boolean;
  /** The inflight area handed to every back-end of this device (INFLIGHT_SHMFD). */
  readonly #inflight = new InflightArea();
  /** The reconnects: the one under way, their count and listeners. */
  readonly #reconnect: DeviceReconnect;
  /** close() began: a reconnect under way gives up. */
  #closing = false;
  readonly #queues = new Map<number, DriverQueue>();
  #ackedFeatures: bigint | undefined;
  #failed: FrontendError | undefined;
  #closed = false;
  #resolveFailure!: (err: FrontendError) => void;
  readonly #failure: Promise<FrontendError>;
  readonly #configListeners = new Set<(config: Uint8Array | undefined) => void>();
  /** Dirty page logging ({@link Device.startDirtyLog}): while on, rings started now log too. */
  readonly #dirtyLog: DeviceDirtyLog;

  /** Takes over what negotiation left: the back-end channel starts being served here. */
  private constructor(host: DeviceHost, fe: Frontend, options: DeviceOptions, negotiated: Negotiated) {
    this.#host = host;
    this.#options = options;
    this.#timeoutMs = options.timeoutMs ?? 5000;
    this.#failure = new Promise((r) => (this.#resolveFailure = r));
    this.#info = negotiated.info;
    this.#regions = negotiated.regions;
    const parts = this.#partsHost();
    this.#reconnect = new DeviceReconnect(parts);
    this.#dirtyLog = new DeviceDirtyLog(parts);
    this.#attach(fe, negotiated);
  }

  /** What the reconnect path and dirty page logging read and do of this device. */
  #partsHost(): ReconnectHost & DirtyLogHost {
    const device = this;
    return {
      options: this.#options,
      timeoutMs: this.#timeoutMs,
      guest: this.#host,
      get info() {
        return device.#info;
      },
      get regions() {
        return device.#regions;
      },
      get ackedFeatures() {
        return device.#ackedFeatures;
      },
      get link() {
        return device.#link;
      },
      queues: this.#queues,
      get closing() {
        return device.#closing;
      },
      get dirtyLog() {
        return device.#dirtyLog;
      },
      attach: (fe, negotiated) => this.#attach(fe, negotiated),
      handInflight: (queueSize) => this.#handInflight(queueSize),
      fail: (err) => this.#fail(err),
    };
  }

  /** Takes over a negotiated connection (the first one, or a restarted back-end's): see {@link BackendLink}. */
  #attach(fe: Frontend, negotiated: Negotiated): void {
    this.#info = negotiated.info;
    this.#memRw = negotiated.memRw;
    this.#link = new BackendLink(this.#host, this.#options, fe, negotiated, {
      onFatal: (e) => this.#fail(e),
      onConfigChange: () => void this.refreshConfig().catch(() => undefined),
    });
  }

  get #fe(): Frontend {
    return this.#link.fe;
  }

  get #mirror(): MemoryTableMirror {
    return this.#link.mirror;
  }

  get #sharedMemory(): DeviceSharedMemoryPort {
    return this.#link.port;
  }

  /**
   * Connects and negotiates. Use {@link Guest.addDevice}.
   * @throws FrontendError `NEGOTIATION`, `PROTOCOL`, `REFUSED`, `BAD_SHMEM_CONFIG`, `DISCONNECTED`, `TIMEOUT`.
   * @internal
   */
  static async open(host: DeviceHost, options: DeviceOptions): Promise<Device> {
    const dialect = resolveDialect(options.dialect);
    const feOptions = { dialect, timeoutMs: options.timeoutMs ?? 5000, ...(options.trace === undefined ? {} : { trace: options.trace }) };
    let fe: Frontend;
    if (options.endpoint !== undefined) fe = new Frontend(options.endpoint, feOptions);
    else if (options.socketPath !== undefined)
      fe = await Frontend.connect(options.socketPath, { ...feOptions, ...(options.retry === undefined ? {} : { retry: options.retry }) });
    else throw new FrontendError("BAD_ARGUMENT", "a device needs socketPath or endpoint");
    let negotiated: Negotiated;
    try {
      negotiated = await negotiate(fe, options, dialect, host);
    } catch (err) {
      fe.close();
      throw asFrontendError(err, "NEGOTIATE");
    }
    return new Device(host, fe, options, negotiated);
  }

  /** True when vhostkit MEM_READ/MEM_WRITE was negotiated with this back-end. */
  get memRwNegotiated(): boolean {
    return this.#memRw;
  }

  /** The options the device was opened with (used by {@link Guest.reconnect}). */
  get options(): DeviceOptions {
    return this.#options;
  }

  /** What the back-end advertised. */
  get info(): DeviceInfo {
    return this.#info;
  }

  /** The connection, for conformance checks that send requests directly. */
  get connection(): Frontend {
    return this.#fe;
  }

  /** The virtio features sent with SET_FEATURES, or `undefined` before {@link Device.start}. */
  get ackedFeatures(): bigint | undefined {
    return this.#ackedFeatures;
  }

  /** The device's VIRTIO Shared Memory Regions, or `undefined` when it has none or was closed. */
  get sharedMemory(): DeviceSharedMemory | undefined {
    return this.#regions;
  }

  /** The error that failed the device, or `undefined` while healthy. */
  get failed(): FrontendError | undefined {
    return this.#failed;
  }

  /** Resolves (never rejects) with the error when the device fails. */
  get failure(): Promise<FrontendError> {
    return this.#failure;
  }

  /** The queue set up by {@link Device.start} at `index`. @throws FrontendError `BAD_ARGUMENT`. */
  queue(index: number): DriverQueue {
    const q = this.#queues.get(index);
    if (q === undefined) throw new FrontendError("BAD_ARGUMENT", `queue ${index} is not set up`, { actual: index });
    return q;
  }

  /** Successful reconnects so far ({@link DeviceOptions.reconnect}). */
  get reconnects(): number {
    return this.#reconnect.count;
  }

  /** Subscribes to reconnects: one event each time a new back-end took over. @returns an unsubscribe function. */
  onReconnect(listener: (event: ReconnectEvent) => void): () => void {
    return this.#reconnect.onReconnect(listener);
  }

  /** Subscribes to config changes (BACKEND_CONFIG_CHANGE_MSG, then GET_CONFIG). @returns an unsubscribe function. */
  onConfigChange(listener: (config: Uint8Array | undefined) => void): () => void {
    this.#configListeners.add(listener);
    return () => this.#configListeners.delete(listener);
  }

  /** Resolves when every queued memory-table propagation was sent and answered (for tests). */
  propagationSettled(): Promise<void> {
    return this.#mirror.settled();
  }

  #check(): void {
    if (this.#closed) throw new FrontendError("CLOSED", "device closed");
    if (this.#failed !== undefined)
      throw new FrontendError("DEVICE_FAILED", `device failed: ${this.#failed.message}`, this.#failed.detail, { cause: this.#failed });
  }

  async #guard<T>(fn: () => Promise<T>): Promise<T> {
    const reconnecting = this.#reconnect.pending;
    if (reconnecting !== undefined) await reconnecting;
    this.#check();
    try {
      return await fn();
    } catch (err) {
      const e = asFrontendError(err, "DEVICE");
      if (isConnectionLost(e)) this.#fail(e);
      throw e;
    }
  }

  /**
   * Turns dirty page logging on (docs/protocol.md#dirty-page-logging): a new {@link DirtyPageLog} for guest RAM,
   * SET_LOG_BASE with it, SET_LOG_FD only with `options.sendLogFd` (QEMU never sends it), SET_FEATURES with VHOST_F_LOG_ALL, SET_VRING_ADDR with
   * VHOST_VRING_F_LOG on every started ring (and on rings started later). The caller owns the log:
   * read it with `takeDirtyPages()`, dispose it after {@link Device.stopDirtyLog} and a last read.
   * Logging does not survive a reconnect.
   * @throws FrontendError `BAD_ARGUMENT` (not started, or already logging), `NEGOTIATION` (LOG_ALL
   *   not offered, or LOG_SHMFD not acknowledged: open the device with `dirtyLog: true`), or as the requests.
   */
  startDirtyLog(options: DirtyLogOptions = {}): Promise<DirtyPageLog> {
    return this.#guard(() => this.#dirtyLog.start(options));
  }

  /** Turns dirty page logging off: SET_FEATURES without LOG_ALL, SET_VRING_ADDR without the log flag. Nothing when off. @throws FrontendError as the requests. */
  stopDirtyLog(): Promise<void> {
    return this.#guard(() => this.#dirtyLog.stop());
  }

  /** Re-reads the config space with GET_CONFIG (same size as before) and notifies listeners. */
  refreshConfig(): Promise<Uint8Array | undefined> {
    return this.#guard(async () => {
      const size = this.#info.config?.byteLength ?? this.#options.configSize;
      if (size === undefined || !hasFeatures(this.#info.ackedProtocolFeatures, ProtocolFeature.CONFIG)) return undefined;
      const config = await this.#fe.getConfig(0, size);
      this.#info = { ...this.#info, config };
      for (const listener of this.#configListeners) callHook(listener, config);
      return config;
    });
  }

  /**
   * Steps 5–9 of docs/protocol.md#negotiation-order: SET_FEATURES (wanted ∩ offered | VERSION_1 | PROTOCOL_FEATURES),
   * the memory table (ADD_MEM_REG per RAM block with CONFIGURE_MEM_SLOTS, else SET_MEM_TABLE; user
   * addresses synthetic), per queue SET_VRING_NUM / BASE(0) / ADDR / CALL / KICK, SET_VRING_ENABLE,
   * then one kick per queue. The rings are packed when VIRTIO_F_RING_PACKED is acknowledged (see
   * {@link DeviceOptions.packedRing}; SET_VRING_BASE then sends the fresh packed base `0x8000_8000`).
   *
   * A refused queue set-up (a queue size above the back-end's maximum, say) stops and releases the
   * queues of this call, so start() can be retried with other options; a refused memory table fails
   * the device (part of it may be in the back-end already).
   * @returns the queues, in the order given.
   * @throws FrontendError `BAD_ARGUMENT` (queue index ≥ queue count, already started), `NEGOTIATION`
   *   (not enough memory slots; packed ring required and not offered), `REFUSED`, `PROTOCOL`,
   *   `DISCONNECTED`, `TIMEOUT`.
   */
  start(options: StartOptions = {}): Promise<readonly DriverQueue[]> {
    return this.#guard(async () => {
      const indices = options.queues ?? [0];
      const size = options.queueSize ?? 64;
      for (const i of indices) {
        if (!Number.isInteger(i) || i < 0 || i >= this.#info.queueNum || i > 255)
          throw new FrontendError("BAD_ARGUMENT", `queue ${i} not in 0..${this.#info.queueNum - 1}`, { actual: i, expected: this.#info.queueNum });
        if (this.#queues.has(i)) throw new FrontendError("BAD_ARGUMENT", `queue ${i} already started`, { actual: i });
      }
      const offered = this.#info.features;
      const features =
        ((options.features ?? 0n) & DRIVER_FEATURE_MASK & offered & ~VirtioFeature.RING_PACKED) |
        this.#packedRingBit(offered) |
        VirtioFeature.VERSION_1 |
        (offered & VirtioFeature.PROTOCOL_FEATURES);
      if (this.#ackedFeatures === undefined) {
        await this.#fe.setFeatures(features);
        this.#ackedFeatures = features;
      }
      await this.#mirror.send(this.#host.sharedMemory.mappingsFor(this.#sharedMemory));
      if (this.#queues.size === 0) await this.#handInflight(size); // before any ring runs
      const out: DriverQueue[] = [];
      try {
        await this.#startQueues(indices, size, features, out);
      } catch (err) {
        await this.#unwindStart(out, err);
        throw err;
      }
      // docs/protocol.md#starting-and-stopping-rings: always write one kick after set-up.
      for (const q of out) q.kick();
      return out;
    });
  }

  /**
   * VIRTIO_F_RING_PACKED when {@link DeviceOptions.packedRing} and the offer agree, else 0n.
   * @throws FrontendError `NEGOTIATION` when the packed ring is required and not offered.
   */
  #packedRingBit(offered: bigint): bigint {
    const want = this.#options.packedRing;
    if (want === false) return 0n;
    if (hasFeatures(offered, VirtioFeature.RING_PACKED)) return VirtioFeature.RING_PACKED;
    if (want === true)
      throw new FrontendError(
        "NEGOTIATION",
        `packed ring required, but the back-end does not offer VIRTIO_F_RING_PACKED (features 0x${offered.toString(16)})`,
        { request: "SET_FEATURES", actual: offered },
      );
    return 0n;
  }

  /** Per queue SET_VRING_NUM / BASE (0, or the fresh packed base) / ADDR / CALL / KICK, then SET_VRING_ENABLE; each queue joins `out` as it is created. */
  async #startQueues(indices: readonly number[], size: number, features: bigint, out: DriverQueue[]): Promise<void> {
    const fe = this.#fe;
    const ram = this.#host.ram;
    for (const index of indices) {
      const q = DriverQueue.create({
        index,
        size,
        memory: this.#host.space,
        allocator: this.#host.allocator,
        timeoutMs: this.#timeoutMs,
        eventIdx: ((this.#ackedFeatures ?? features) & VirtioFeature.EVENT_IDX) !== 0n,
        packed: ((this.#ackedFeatures ?? features) & VirtioFeature.RING_PACKED) !== 0n,
        onFatal: (e) => this.#fail(e),
      });
      this.#queues.set(index, q);
      out.push(q);
      await sendRing(fe, ram, q, q.initialVringBase, this.#dirtyLog.logging);
    }
    if (hasFeatures(this.#ackedFeatures ?? features, VirtioFeature.PROTOCOL_FEATURES)) {
      for (const index of indices) await fe.setVringEnable(index, true);
    }
  }

  /**
   * A start() whose queue set-up failed without losing the connection (the back-end refused, say, a
   * queue size above its maximum): stop the queues of that call in the back-end (GET_VRING_BASE,
   * whatever state they reached), then release their rings, so that nothing of theirs stays in use
   * and start() can be retried. A transport failure on the way fails the device as usual.
   */
  async #unwindStart(queues: readonly DriverQueue[], cause: unknown): Promise<void> {
    // Transport failures fail the whole device (#guard); anything else leaves the connection usable.
    if (isConnectionLost(cause)) return;
    try {
      for (const q of queues) await this.#fe.getVringBase(q.index);
    } catch (err) {
      const e = asFrontendError(err, "GET_VRING_BASE");
      if (isConnectionLost(e)) this.#fail(e);
    } finally {
      for (const q of queues) {
        q.close();
        this.#queues.delete(q.index);
      }
    }
  }

  /**
   * Step 10: SET_VRING_ENABLE(0) and GET_VRING_BASE per started queue (which stops the ring), then
   * releases the queues.
   * @returns the GET_VRING_BASE `num` per queue index: the next avail index (split), or the avail
   *   and used positions with their wrap counters (packed).
   * @throws FrontendError `PROTOCOL`, `DISCONNECTED`, `TIMEOUT`, `REFUSED`.
   */
  stop(): Promise<ReadonlyMap<number, number>> {
    return this.#guard(async () => {
      const bases = new Map<number, number>();
      const indices = [...this.#queues.keys()];
      try {
        if (this.#ackedFeatures !== undefined && hasFeatures(this.#ackedFeatures, VirtioFeature.PROTOCOL_FEATURES)) {
          for (const i of indices) await this.#fe.setVringEnable(i, false);
        }
        for (const i of indices) bases.set(i, await this.#fe.getVringBase(i));
      } finally {
        for (const q of this.#queues.values()) q.close();
        this.#queues.clear();
      }
      return bases;
    });
  }

  /** The inflight area goes to the back-end before rings start, when INFLIGHT_SHMFD is negotiated (GET_INFLIGHT_FD the first time). */
  async #handInflight(queueSize: number): Promise<boolean> {
    if (!hasFeatures(this.#info.ackedProtocolFeatures, ProtocolFeature.INFLIGHT_SHMFD) || queueSize === 0) return false;
    return this.#inflight.hand(this.#fe, Math.min(this.#info.queueNum, 256), queueSize);
  }

  #fail(err: FrontendError): void {
    if (this.#failed !== undefined || this.#closed || this.#closing || this.#reconnect.pending !== undefined) return;
    if (this.#options.reconnect !== undefined && this.#options.socketPath !== undefined && isFrontendError(err) && err.code === "DISCONNECTED") {
      this.#reconnect.begin(err);
      return;
    }
    this.#failed = isFrontendError(err) ? err : asFrontendError(err, "DEVICE");
    this.#mirror.stop();
    for (const q of this.#queues.values()) q.fail(this.#failed);
    // The other devices' tables lose this device's mappings.
    this.#sharedMemory.dropMappings();
    this.#link.handler?.close();
    this.#fe.close();
    this.#resolveFailure(this.#failed);
  }

  /**
   * Tear-down: stops started queues (GET_VRING_BASE), RESET_DEVICE (RESET_OWNER when the back-end
   * lacks it, as QEMU does), drops every
   * shared memory mapping, closes both sockets and releases rings and reservations. Errors from a
   * dead back-end are ignored. Idempotent.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closing = true;
    await this.#reconnect.pending;
    if (this.#failed === undefined) {
      try {
        if (this.#queues.size > 0) await this.stop();
        // As QEMU's vhost_user_reset_device: RESET_DEVICE when negotiated, else RESET_OWNER.
        if (hasFeatures(this.#info.ackedProtocolFeatures, ProtocolFeature.RESET_DEVICE)) await this.#fe.resetDevice();
        else await this.#fe.resetOwner();
      } catch {
        // the back-end may be gone; tear-down continues
      }
    }
    this.#mirror.drain();
    this.#sharedMemory.dropMappings();
    await this.#mirror.settled();
    this.#closed = true;
    this.#mirror.release();
    this.#link.handler?.close();
    this.#fe.close();
    for (const q of this.#queues.values()) q.close();
    this.#queues.clear();
    this.#inflight.close();
    this.#sharedMemory.leave();
    if (this.#regions !== undefined) {
      this.#host.space.removeDevice(this.#regions);
      this.#regions.dispose();
      this.#regions = undefined;
    }
    this.#host.detach(this);
  }
}
