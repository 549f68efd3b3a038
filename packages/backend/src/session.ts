/**
 * What each front-end request does: the semantic checks (feature negotiated, state, values) on
 * top of the syntax `@vhostkit/wire` already checked, and their effect on one connection's state —
 * negotiated features, memory table, rings, status, the back-end channel. Replies are not sent
 * here: the {@link Dispatcher} does that by the reply rules.
 * @module
 */
import { FallbackMemory } from "@vhostkit/fallback";
import { MemoryTable, type GuestMemory } from "@vhostkit/regions";
import { Endpoint, EventFd, OwnedFd } from "@vhostkit/transport";
import {
  MEM_RW_MAX_PAYLOAD,
  ProtocolFeature,
  UPSTREAM,
  VirtioFeature,
  makeShmemConfig,
  type DecodedFrontendRequest,
  type Dialect,
  type MemoryRegion,
} from "@vhostkit/wire";
import { BackendClient } from "./backend-client.js";
import type { DeviceBackend, DeviceContext, ShmemRegionSpec } from "./device-backend.js";
import { checkDevice } from "./device-checks.js";
import { DeviceLifecycle, noBackendChannel } from "./device-lifecycle.js";
import { DEFAULT_MAX_DEVICE_STATE_BYTES, DeviceStateChannel } from "./device-state-channel.js";
import { DirtyLog } from "./dirty-log.js";
import { InflightArea } from "./inflight-area.js";
import { memRwMasks, type BackendEvent, type DispatcherOptions } from "./dispatcher-options.js";
import { BackendError, protocolError } from "./errors.js";
import { FdReply } from "./reply-policy.js";
import { isPackedLayout } from "./ring-layout.js";
import { RingRunner } from "./ring-runner.js";

/**
 * Virtio features the framework offers on top of the device's own: VERSION_1, PROTOCOL_FEATURES,
 * EVENT_IDX, INDIRECT_DESC, RING_PACKED (unless the device sets `packedRing: false`) and LOG_ALL
 * (unless the dispatcher option `dirtyLog` is `false`).
 */
export const FRAMEWORK_FEATURES =
  VirtioFeature.VERSION_1 |
  VirtioFeature.PROTOCOL_FEATURES |
  VirtioFeature.EVENT_IDX |
  VirtioFeature.INDIRECT_DESC |
  VirtioFeature.RING_PACKED |
  VirtioFeature.LOG_ALL;

/** Protocol features the framework offers (LOG_SHMFD unless the dispatcher option `dirtyLog` is `false`). */
export const FRAMEWORK_PROTOCOL_FEATURES =
  ProtocolFeature.LOG_SHMFD |
  ProtocolFeature.MQ |
  ProtocolFeature.REPLY_ACK |
  ProtocolFeature.BACKEND_REQ |
  ProtocolFeature.BACKEND_SEND_FD |
  ProtocolFeature.CONFIGURE_MEM_SLOTS |
  ProtocolFeature.STATUS |
  ProtocolFeature.RESET_DEVICE |
  ProtocolFeature.INFLIGHT_SHMFD;

const PAGE = 4096n;

/**
 * One front-end's session with a device: the state its requests build up, and what each request
 * does to it. Every method that carries out a request throws a `VhostUserError` to refuse it.
 * @internal
 */
export class Session {
  readonly #device: DeviceBackend;
  readonly #dialect: Dialect;
  readonly #options: DispatcherOptions;
  readonly #memory: MemoryTable;
  readonly #rings: RingRunner;
  readonly #lifecycle: DeviceLifecycle;
  readonly #features: bigint;
  readonly #protocolFeatures: bigint;
  /** vhostkit's MEM_RW gate bit when offered, else 0n. */
  readonly #memRwMask: bigint;
  readonly #memRwBufferMask: bigint; // MEM_RW revision 2, docs/shmem.md#shared-data-buffer-revision-2
  readonly #shmemRegions: readonly ShmemRegionSpec[];
  #ackedFeatures: bigint | undefined;
  #ackedProtocol = 0n;
  #status = 0n;
  #client: BackendClient | undefined;
  #fallbackMemory: GuestMemory | undefined;
  /** The inflight area (GET_INFLIGHT_FD / SET_INFLIGHT_FD), once the front-end asked for one. */
  #inflight: InflightArea | undefined;
  /** The dirty page log (SET_LOG_BASE), used while LOG_ALL is acknowledged (docs/protocol.md#dirty-page-logging). */
  #log: DirtyLog | undefined;
  /** SET_LOG_FD's eventfd, kept until replaced or the connection ends. */
  #logFd: OwnedFd | undefined;
  /** SET_DEVICE_STATE_FD / CHECK_DEVICE_STATE (docs/protocol.md#device-state-transfer). */
  readonly #state: DeviceStateChannel;

  /**
   * @param device - the device; it serves one connection at a time.
   * @param options - dialect, limits, reactor.
   * @param report - receives the session's events; must not throw.
   * @throws BackendError `BAD_DEVICE` when the device definition is invalid.
   */
  constructor(device: DeviceBackend, options: DispatcherOptions, report: (event: BackendEvent) => void) {
    // docs/shmem.md#region-query: the answer to GET_SHMEM_CONFIG is fixed for the connection; ask the device once.
    this.#shmemRegions = checkDevice(device);
    this.#device = device;
    this.#options = options;
    this.#dialect = options.dialect ?? UPSTREAM;
    this.#memory = new MemoryTable({
      ...(options.maxMemSlots === undefined ? {} : { maxSlots: options.maxMemSlots }),
      requireSealedFds: options.requireSealedMemory ?? false,
    });
    this.#lifecycle = new DeviceLifecycle(device, report);
    const stateOptions = { maxBytes: options.maxDeviceStateBytes ?? DEFAULT_MAX_DEVICE_STATE_BYTES, ownPipe: options.ownStatePipe ?? false };
    this.#state = new DeviceStateChannel(device, { ...stateOptions, reactor: options.reactor }, report);
    this.#rings = new RingRunner({
      device,
      memory: this.#memory,
      handlerMemory: () => this.#guestMemory(),
      onQueueBroken: (index, error) => report({ kind: "queue-broken", index, error }),
      onRunningChange: (running) => this.#lifecycle.runningChanged(running, () => this.#deviceContext()),
      inflight: (index) => this.#inflight?.queue(index),
      onInflight: (index, resubmitted) => report({ kind: "inflight", index, resubmitted }),
    });
    const logging = options.dirtyLog !== false;
    this.#features =
      (device.features | FRAMEWORK_FEATURES) & ~(device.packedRing === false ? VirtioFeature.RING_PACKED : 0n) & ~(logging ? 0n : VirtioFeature.LOG_ALL);
    ({ gate: this.#memRwMask, buffer: this.#memRwBufferMask } = memRwMasks(options.memRw));
    this.#protocolFeatures =
      (FRAMEWORK_PROTOCOL_FEATURES & ~(logging ? 0n : ProtocolFeature.LOG_SHMFD)) |
      (device.getConfig ? ProtocolFeature.CONFIG : 0n) |
      (device.shmemRegions ? this.#dialect.shmemFeature : 0n) |
      (DeviceStateChannel.supported(device) ? ProtocolFeature.DEVICE_STATE : 0n) |
      this.#memRwMask |
      this.#memRwBufferMask;
  }

  /** Virtio features offered in GET_FEATURES. */
  get offeredFeatures(): bigint {
    return this.#features;
  }

  /** Protocol features offered in GET_PROTOCOL_FEATURES. */
  get offeredProtocolFeatures(): bigint {
    return this.#protocolFeatures;
  }

  /** Protocol features the front-end acknowledged (SET_PROTOCOL_FEATURES). */
  get ackedProtocolFeatures(): bigint {
    return this.#ackedProtocol;
  }

  /** True while the device runs (see {@link RingRunner.running}). */
  get running(): boolean {
    return this.#rings.running;
  }

  /** The back-end channel client, once SET_BACKEND_REQ_FD arrived. */
  get client(): BackendClient | undefined {
    return this.#client;
  }

  /** True when the front-end acknowledged protocol feature `f`. */
  negotiated(f: bigint): boolean {
    return (this.#ackedProtocol & f) !== 0n;
  }

  /** Graceful shutdown: no new handler run starts; resolves once none runs (see {@link RingRunner.drain}). */
  drain(): Promise<void> {
    return this.#rings.drain();
  }

  /**
   * The connection ended: stops the rings, closes the back-end channel and unmaps guest memory
   * (handlers still running keep their views until they return); then waits for those handlers,
   * because the same device serves the next connection, and resets the device. Never rejects.
   */
  async close(): Promise<void> {
    this.#rings.close();
    this.#client?.close();
    this.#client = undefined;
    this.#memory.dispose();
    await Promise.all([this.#rings.quiesce(), this.#state.abort()]);
    // Stopped rings and no handler: nothing views the area any more.
    this.#inflight?.dispose();
    this.#inflight = undefined;
    this.#rings.setDirtyLog(undefined);
    this.#log?.dispose();
    this.#log = undefined;
    this.#logFd?.close();
    this.#logFd = undefined;
    this.#lifecycle.reset();
  }

  /** Logging is on while LOG_ALL is acknowledged and a log is mapped; off otherwise (a null logger: nothing to pay). */
  #applyDirtyLog(): void {
    const on = this.#ackedFeatures !== undefined && (this.#ackedFeatures & VirtioFeature.LOG_ALL) !== 0n;
    this.#rings.setDirtyLog(on ? this.#log : undefined);
  }

  #requireProtocol(request: string, f: bigint, what: string): void {
    if (!this.negotiated(f)) throw new BackendError("NOT_NEGOTIATED", `${request.toLowerCase()}: ${what} not negotiated`, { request });
  }

  /**
   * Carries out one decoded request whose fd count was checked against the message table. Fds it
   * keeps are transferred out of `fds`; the caller closes the rest.
   * @returns the reply value for always-replied requests.
   */
  async carryOut(m: DecodedFrontendRequest, fds: readonly OwnedFd[]): Promise<unknown> {
    switch (m.name) {
      case "GET_FEATURES":
        return this.#features;
      case "SET_FEATURES": {
        const extra = m.value & ~this.#features;
        if (extra !== 0n) throw protocolError(m.name, `features 0x${extra.toString(16)} were not offered`, { actual: m.value, expected: this.#features });
        this.#ackedFeatures = m.value;
        this.#rings.featuresAcked(m.value);
        this.#applyDirtyLog();
        if ((m.value & VirtioFeature.PROTOCOL_FEATURES) === 0n) this.#rings.enableAll();
        this.#device.featuresAcked?.(m.value);
        return undefined;
      }
      case "SET_OWNER":
        return undefined;
      case "RESET_OWNER":
        await this.#stopAll();
        return undefined;
      case "GET_PROTOCOL_FEATURES":
        return this.#protocolFeatures;
      case "SET_PROTOCOL_FEATURES": {
        const extra = m.value & ~this.#protocolFeatures;
        if (extra !== 0n)
          throw protocolError(m.name, `protocol features 0x${extra.toString(16)} were not offered`, { actual: m.value, expected: this.#protocolFeatures });
        this.#ackedProtocol = m.value;
        return undefined;
      }
      case "GET_QUEUE_NUM":
        return BigInt(this.#rings.count);
      case "GET_MAX_MEM_SLOTS":
        return BigInt(this.#memory.maxSlots);
      case "SET_MEM_TABLE": {
        const regions = m.value.regions.map((r, i) => this.#regionWithFd(m.name, r, fds[i]));
        // No waiting for queue handlers (one may be waiting for a back-end request's reply while the
        // front-end waits for this one): they hold pins, so the old mappings outlive their views.
        this.#memory.setMemTable(regions);
        this.#rings.remap();
        return undefined;
      }
      case "ADD_MEM_REG":
        this.#requireProtocol(m.name, ProtocolFeature.CONFIGURE_MEM_SLOTS, "CONFIGURE_MEM_SLOTS");
        this.#memory.addRegion(this.#regionWithFd(m.name, m.value, fds[0]));
        this.#rings.remap("added");
        return undefined;
      case "REM_MEM_REG":
        this.#requireProtocol(m.name, ProtocolFeature.CONFIGURE_MEM_SLOTS, "CONFIGURE_MEM_SLOTS");
        // Answered at once, as SET_MEM_TABLE: the unmap waits for the handlers' pins instead.
        this.#memory.removeRegion({ guestPhysAddr: m.value.guestPhysAddr, memorySize: m.value.memorySize, userspaceAddr: m.value.userAddr });
        this.#rings.remap({ removed: m.value.userAddr, len: m.value.memorySize });
        return undefined;
      case "SET_VRING_NUM":
        this.#rings.setSize(m.name, m.value.index, m.value.num);
        return undefined;
      case "SET_VRING_ADDR":
        this.#rings.setAddresses(
          m.name,
          m.value.index,
          { desc: m.value.descAddr, avail: m.value.availAddr, used: m.value.usedAddr },
          m.value.flags,
          m.value.logAddr,
        );
        return undefined;
      case "SET_VRING_BASE":
        this.#rings.setBase(m.name, m.value.index, m.value.num);
        return undefined;
      case "GET_VRING_BASE": {
        this.#rings.checkIndex(m.name, m.value.index);
        this.#beginStop();
        return { index: m.value.index, num: await this.#rings.stop(m.name, m.value.index) };
      }
      case "SET_VRING_KICK": {
        this.#rings.checkIndex(m.name, m.value.index);
        if (m.value.noFd) throw new BackendError("UNSUPPORTED", "set_vring_kick: polling mode (no kick fd) is not supported", { request: m.name });
        this.#state.checkIdle(m.name);
        this.#rings.setKick(m.name, m.value.index, this.#eventFd(m.name, fds[0]), this.#ackedFeatures);
        return undefined;
      }
      case "SET_VRING_CALL":
        this.#rings.checkIndex(m.name, m.value.index);
        this.#rings.setCall(m.name, m.value.index, m.value.noFd ? undefined : this.#eventFd(m.name, fds[0]));
        return undefined;
      case "SET_VRING_ERR":
        this.#rings.checkIndex(m.name, m.value.index);
        this.#rings.setErr(m.name, m.value.index, m.value.noFd ? undefined : this.#eventFd(m.name, fds[0]));
        return undefined;
      case "SET_VRING_ENABLE": {
        this.#rings.checkIndex(m.name, m.value.index);
        if (m.value.num > 1) throw protocolError(m.name, `enable value ${m.value.num} is not 0 or 1`, { actual: m.value.num });
        if (this.#ackedFeatures !== undefined && (this.#ackedFeatures & VirtioFeature.PROTOCOL_FEATURES) === 0n) {
          throw new BackendError("NOT_NEGOTIATED", "set_vring_enable: VHOST_USER_F_PROTOCOL_FEATURES not in SET_FEATURES", { request: m.name });
        }
        this.#rings.setEnabled(m.name, m.value.index, m.value.num === 1);
        return undefined;
      }
      case "SET_BACKEND_REQ_FD":
        this.#openBackendChannel(m.name, fds[0]);
        return undefined;
      case "GET_CONFIG": {
        this.#requireProtocol(m.name, ProtocolFeature.CONFIG, "CONFIG");
        const get = this.#device.getConfig;
        if (!get) throw new BackendError("UNSUPPORTED", "get_config: the device has no config space", { request: m.name });
        const data = get.call(this.#device, m.value.offset, m.value.data.byteLength);
        if (data.byteLength !== m.value.data.byteLength)
          throw protocolError(m.name, `device returned 0x${data.byteLength.toString(16)} bytes for 0x${m.value.data.byteLength.toString(16)}`);
        return { offset: m.value.offset, flags: m.value.flags, data };
      }
      case "SET_CONFIG": {
        this.#requireProtocol(m.name, ProtocolFeature.CONFIG, "CONFIG");
        const set = this.#device.setConfig;
        if (!set) throw new BackendError("UNSUPPORTED", "set_config: the config space is read-only", { request: m.name });
        set.call(this.#device, m.value.offset, m.value.data.slice(), m.value.flags);
        return undefined;
      }
      case "SET_STATUS":
        this.#requireProtocol(m.name, ProtocolFeature.STATUS, "STATUS");
        if (m.value > 0xffn) throw protocolError(m.name, `status 0x${m.value.toString(16)} is not a byte`);
        this.#status = m.value;
        if (m.value === 0n) await this.#stopAll();
        return undefined;
      case "GET_STATUS":
        this.#requireProtocol(m.name, ProtocolFeature.STATUS, "STATUS");
        return this.#status;
      case "RESET_DEVICE":
        this.#requireProtocol(m.name, ProtocolFeature.RESET_DEVICE, "RESET_DEVICE");
        await this.#stopAll();
        await this.#state.abort();
        this.#ackedFeatures = undefined;
        this.#applyDirtyLog();
        this.#status = 0n;
        this.#rings.forgetConfiguration();
        this.#lifecycle.reset();
        return undefined;
      case "GET_SHMEM_CONFIG":
      case "GET_SHARED_MEMORY_REGIONS": {
        if (m.name === "GET_SHARED_MEMORY_REGIONS" ? this.#dialect.layout !== "crosvm" : this.#dialect.layout === "crosvm") {
          throw protocolError(m.name, `not part of the ${this.#dialect.name} dialect`);
        }
        this.#requireProtocol(m.name, this.#dialect.shmemFeature, "SHMEM");
        const regions = this.#shmemRegions;
        if (m.name === "GET_SHARED_MEMORY_REGIONS") return { regions: regions.map((r) => ({ id: r.shmid, length: r.size })) };
        const sizes = new Array<bigint>(256).fill(0n);
        for (const r of regions) sizes[r.shmid] = r.size;
        return makeShmemConfig(sizes);
      }
      case "GET_INFLIGHT_FD": {
        this.#requireProtocol(m.name, ProtocolFeature.INFLIGHT_SHMFD, "INFLIGHT_SHMFD");
        await this.#replaceableInflight(m.name);
        const { area, fd, reply } = InflightArea.allocate(m.name, m.value, this.#rings.count, isPackedLayout(this.#ackedFeatures));
        this.#useInflight(area);
        return new FdReply(reply, [fd]);
      }
      case "SET_INFLIGHT_FD": {
        this.#requireProtocol(m.name, ProtocolFeature.INFLIGHT_SHMFD, "INFLIGHT_SHMFD");
        if (fds[0] === undefined) throw protocolError(m.name, "no fd");
        await this.#replaceableInflight(m.name);
        this.#useInflight(InflightArea.attach(m.name, m.value, fds[0], this.#rings.count, isPackedLayout(this.#ackedFeatures)));
        return undefined;
      }
      case "SET_LOG_BASE": {
        // Mapped first, then swapped in: marks go to the new log at once, the old one is unmapped after.
        this.#requireProtocol(m.name, ProtocolFeature.LOG_SHMFD, "LOG_SHMFD");
        if (fds[0] === undefined) throw protocolError(m.name, "no fd");
        const old = this.#log;
        this.#log = DirtyLog.map(m.name, m.value, fds[0].fd);
        this.#applyDirtyLog();
        old?.dispose();
        return 0n; // the reply LOG_SHMFD requires (docs/protocol.md#dirty-page-logging)
      }
      case "SET_LOG_FD":
        if ((this.#features & VirtioFeature.LOG_ALL) === 0n) throw new BackendError("UNSUPPORTED", "set_log_fd: LOG_ALL was not offered", { request: m.name });
        if (fds[0] === undefined) throw protocolError(m.name, "no fd");
        this.#logFd?.close();
        this.#logFd = new OwnedFd(fds[0].transfer());
        return undefined;
      case "SET_DEVICE_STATE_FD":
        this.#requireProtocol(m.name, ProtocolFeature.DEVICE_STATE, "DEVICE_STATE");
        return this.#state.begin(m.value, fds[0], this.#rings);
      case "CHECK_DEVICE_STATE":
        this.#requireProtocol(m.name, ProtocolFeature.DEVICE_STATE, "DEVICE_STATE");
        return this.#state.check();
      case "SEND_RARP":
      case "NET_SET_MTU":
      case "IOTLB_MSG":
      case "SET_VRING_ENDIAN":
      case "CREATE_CRYPTO_SESSION":
      case "CLOSE_CRYPTO_SESSION":
      case "POSTCOPY_ADVISE":
      case "POSTCOPY_LISTEN":
      case "POSTCOPY_END":
      case "GPU_SET_SOCKET":
      case "VRING_KICK":
      case "GET_SHARED_OBJECT":
      case "GET_VRING_BASE_SKIP_DRAIN":
        // An always-replied one cannot be refused with a reply: the reply rules drop the front-end.
        throw new BackendError("UNSUPPORTED", `${m.name.toLowerCase()}: its feature was not offered`, { request: m.name });
      default: {
        const unreachable: never = m;
        throw protocolError(String((unreachable as { name: string }).name), "unhandled request");
      }
    }
  }

  /**
   * Before a new inflight area replaces the current one: every ring stopped (a started ring records
   * into the current one; the front-end sends GET/SET_INFLIGHT_FD before it starts them) and no
   * handler running, so the old mapping can go.
   * @throws BackendError `PROTOCOL` when a ring is started.
   */
  async #replaceableInflight(request: string): Promise<void> {
    for (let i = 0; i < this.#rings.count; i++) if (this.#rings.isStarted(i)) throw protocolError(request, `vring ${i} is started`);
    await this.#rings.quiesce();
  }

  /** Rings started from now on record into `area` (the previous area is unmapped). */
  #useInflight(area: InflightArea): void {
    this.#inflight?.dispose();
    this.#inflight = area;
  }

  /** SET_BACKEND_REQ_FD: the back-end channel on `fd` (transferred out), replacing any earlier one. */
  #openBackendChannel(request: string, fd: OwnedFd | undefined): void {
    this.#requireProtocol(request, ProtocolFeature.BACKEND_REQ, "BACKEND_REQ");
    if (fd === undefined) throw protocolError(request, "no fd");
    // docs/shmem.md#extension-rules, rule 6: only MEM_READ/MEM_WRITE replies pass the usual payload cap, once the gate is negotiated.
    const memRw = this.#memRwMask !== 0n && this.negotiated(this.#memRwMask);
    const ep = new Endpoint(new OwnedFd(fd.transfer()), {
      ...(memRw ? { maxPayload: MEM_RW_MAX_PAYLOAD } : {}),
      fdsAllowed: () => 1,
      ...(this.#options.reactor === undefined ? {} : { reactor: this.#options.reactor }),
    });
    this.#client?.close();
    this.#client = new BackendClient(ep, {
      dialect: this.#dialect,
      // crosvm legacy's mandatory replies cover its SHMEM messages only (the client sends those
      // expecting a reply anyway); everything else follows the REPLY_ACK rule.
      replyAck: this.negotiated(ProtocolFeature.REPLY_ACK),
      shmem: this.negotiated(this.#dialect.shmemFeature),
      sendFd: this.negotiated(ProtocolFeature.BACKEND_SEND_FD),
      config: this.negotiated(ProtocolFeature.CONFIG),
      memRw,
      memRwBuffer: memRw && this.negotiated(this.#memRwBufferMask),
      isRunning: () => this.#rings.running,
      ...(this.#options.timeoutMs === undefined ? {} : { timeoutMs: this.#options.timeoutMs }),
    });
  }

  /** A region of SET_MEM_TABLE or ADD_MEM_REG (`request`, named in errors) with its fd. */
  #regionWithFd(
    request: string,
    r: MemoryRegion,
    fd: OwnedFd | undefined,
  ): { guestPhysAddr: bigint; memorySize: bigint; userspaceAddr: bigint; mmapOffset: bigint; fd: OwnedFd } {
    if (fd === undefined) throw protocolError(request, "region without an fd");
    if (r.mmapOffset % PAGE !== 0n) throw protocolError(request, `mmap_offset 0x${r.mmapOffset.toString(16)} not page-aligned`);
    return { guestPhysAddr: r.guestPhysAddr, memorySize: r.memorySize, userspaceAddr: r.userAddr, mmapOffset: r.mmapOffset, fd };
  }

  /** The eventfd of SET_VRING_KICK / CALL / ERR (`request`, named in errors), `fd` transferred out. */
  #eventFd(request: string, fd: OwnedFd | undefined): EventFd {
    if (fd === undefined) throw protocolError(request, "no fd");
    return new EventFd(new OwnedFd(fd.transfer()), ...(this.#options.reactor === undefined ? [] : [this.#options.reactor]));
  }

  /**
   * The front-end is stopping the device: not running from now on (the device's `stop` hook runs,
   * and no new SHMEM message may leave), and back-end requests a handler waits on are abandoned so
   * the handler can finish: QEMU reads the back-end channel only after its stop request is answered.
   */
  #beginStop(): void {
    this.#rings.beginStop();
    this.#client?.abandon();
  }

  async #stopAll(): Promise<void> {
    this.#beginStop();
    await this.#rings.stopAll();
  }

  /**
   * The memory devices see: the memory table, and — when vhostkit MEM_RW is negotiated — a
   * {@link FallbackMemory} over it that reaches addresses outside the table through MEM_READ /
   * MEM_WRITE on the back-end channel.
   */
  #guestMemory(): GuestMemory {
    if (this.#memRwMask === 0n || !this.negotiated(this.#memRwMask)) return this.#memory;
    this.#fallbackMemory ??= new FallbackMemory(this.#memory, () => this.#client);
    return this.#fallbackMemory;
  }

  #deviceContext(): DeviceContext {
    return { features: this.#ackedFeatures ?? 0n, memory: this.#guestMemory(), client: this.#client ?? noBackendChannel() };
  }
}
