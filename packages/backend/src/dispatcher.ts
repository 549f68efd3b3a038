/**
 * Handles front-end requests for one connection: the "front-end requests × handles" corner of the
 * protocol-role grid (STYLE.md §1). Syntax comes checked from `@vhostkit/wire`; this file does the
 * semantics (negotiated features, state, fd counts) and the REPLY_ACK rules (PROTOCOL.md §4.3).
 * @module
 */
import { FallbackMemory } from "@vhostkit/fallback";
import { MemoryTable, isRegionError, type GuestMemory } from "@vhostkit/regions";
import { Endpoint, EventFd, OwnedFd, sendAck, sendReply, type ReceivedMessage, type Reactor } from "@vhostkit/transport";
import { SplitQueue, isVirtqueueError, type RingAddresses } from "@vhostkit/virtqueue";
import {
  FrontendRequest,
  HEADER_SIZE,
  HeaderFlag,
  MAX_VRING_SIZE,
  MEM_RW_MAX_PAYLOAD,
  ProtocolFeature,
  UPSTREAM,
  VRING_F_LOG,
  VirtioFeature,
  decodeMessage,
  decodeSplitVringBase,
  encodeReply,
  expectedFdCount,
  isVhostUserError,
  makeShmemConfig,
  tryMessageSpec,
  vhostkitMemRwFeature,
  type DecodedFrontendRequest,
  type Dialect,
  type MemoryRegion,
  type VhostUserError,
} from "@vhostkit/wire";
import { BackendClient, type BackendChannel } from "./backend-client.js";
import type { DeviceBackend, DeviceContext, QueueContext, ShmemRegionSpec } from "./device-backend.js";
import { BackendError } from "./errors.js";
import { Vring } from "./vring.js";

/** Virtio features the framework always offers on top of the device's own. */
export const FRAMEWORK_FEATURES = VirtioFeature.VERSION_1 | VirtioFeature.PROTOCOL_FEATURES | VirtioFeature.EVENT_IDX | VirtioFeature.INDIRECT_DESC;

/** Protocol features the framework always offers. */
export const FRAMEWORK_PROTOCOL_FEATURES =
  ProtocolFeature.MQ |
  ProtocolFeature.REPLY_ACK |
  ProtocolFeature.BACKEND_REQ |
  ProtocolFeature.BACKEND_SEND_FD |
  ProtocolFeature.CONFIGURE_MEM_SLOTS |
  ProtocolFeature.STATUS |
  ProtocolFeature.RESET_DEVICE;

const PAGE = 4096n;
/** Front-end requests served back to back before the dispatcher yields to the event loop once. */
const FAIRNESS_BATCH = 32;

/** Something the dispatcher reports for logs and tests (it never logs by itself). */
export type BackendEvent =
  /** A request was received (before it is handled). */
  | { readonly kind: "request"; readonly name: string; readonly flags: number; readonly size: number; readonly fds: number }
  /** A request was refused with a failure reply (the connection stays up). */
  | { readonly kind: "rejected"; readonly name: string; readonly error: VhostUserError }
  /** The front-end was dropped because of `error` (protocol violation without a way to answer it). */
  | { readonly kind: "dropped"; readonly error: VhostUserError }
  /** The front-end disconnected. */
  | { readonly kind: "disconnected" }
  /** A guest error broke queue `index`; its err fd was signalled. */
  | { readonly kind: "queue-broken"; readonly index: number; readonly error: unknown }
  /** The device's `start` hook failed. */
  | { readonly kind: "device-error"; readonly error: unknown }
  /** The device started (`true`) or stopped (`false`) running. */
  | { readonly kind: "running"; readonly running: boolean };

/** Options of a {@link Dispatcher} (and of `serve`). */
export interface DispatcherOptions {
  /** SHMEM dialect of the connection (default upstream). */
  readonly dialect?: Dialect;
  /** GET_MAX_MEM_SLOTS answer and memory-table cap (default 509). */
  readonly maxMemSlots?: number;
  /**
   * Refuse SET_MEM_TABLE / ADD_MEM_REG regions backed by a file without `F_SEAL_SHRINK` (default
   * `false`): a front-end that truncates guest memory under the mapping would make the next access
   * a SIGBUS that kills this process. QEMU's `memory-backend-memfd` (default `seal=on`) and
   * vhostkit's front-end seal guest RAM; QEMU's `memory-backend-file` cannot, hence the default.
   */
  readonly requireSealedMemory?: boolean;
  /** Offer vhostkit's MEM_READ/MEM_WRITE (SHMEM.md §7.2): `true` for bit 63, or `{ bit }`. */
  readonly memRw?: boolean | { readonly bit: number };
  /** Per-request timeout on the back-end channel, milliseconds (default 5000). */
  readonly timeoutMs?: number;
  /** Diagnostics sink. */
  readonly onEvent?: (event: BackendEvent) => void;
  /** Reactor for the eventfds and sockets (default the shared one). */
  readonly reactor?: Reactor;
}

/** Internal: ends the connection. */
class Drop extends Error {
  readonly error: VhostUserError;
  constructor(error: VhostUserError) {
    super(error.message);
    this.error = error;
  }
}

function protocolError(request: string, message: string, detail: Record<string, unknown> = {}): BackendError {
  return new BackendError("PROTOCOL", `${request.toLowerCase()}: ${message}`, { request, ...detail });
}

function isPowerOfTwo(n: number): boolean {
  return Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;
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
  readonly #device: DeviceBackend;
  readonly #dialect: Dialect;
  readonly #opts: DispatcherOptions;
  readonly #memory: MemoryTable;
  readonly #vrings: Vring[];
  readonly #features: bigint;
  readonly #protocolFeatures: bigint;
  readonly #memRwMask: bigint;
  readonly #shmemRegions: readonly ShmemRegionSpec[];
  #ackedFeatures: bigint | undefined;
  #ackedProtocol = 0n;
  #status = 0n;
  #stopped = false;
  #running = false;
  #client: BackendClient | undefined;
  #guest: GuestMemory | undefined;
  #inflight = 0;
  #idle: (() => void)[] = [];
  #closed = false;

  /**
   * @param endpoint - the connected front-end socket; ownership is taken. Fd counts are checked per
   *   request against the wire message table (extra fds are closed and the request refused).
   * @param device - the device; it serves one connection at a time.
   * @param options - dialect, limits, diagnostics.
   * @throws BackendError `BAD_DEVICE` when the device definition is invalid.
   */
  constructor(endpoint: Endpoint, device: DeviceBackend, options: DispatcherOptions = {}) {
    // SHMEM.md §3: the answer to GET_SHMEM_CONFIG is fixed for the connection; ask the device once.
    this.#shmemRegions = checkDevice(device);
    this.#ep = endpoint;
    this.#device = device;
    this.#opts = options;
    this.#dialect = options.dialect ?? UPSTREAM;
    this.#memory = new MemoryTable({ ...(options.maxMemSlots === undefined ? {} : { maxSlots: options.maxMemSlots }), requireSealedFds: options.requireSealedMemory ?? false });
    this.#vrings = Array.from({ length: device.queueCount }, (_, i) => new Vring(i));
    this.#features = device.features | FRAMEWORK_FEATURES;
    this.#memRwMask = options.memRw === undefined || options.memRw === false ? 0n : vhostkitMemRwFeature(options.memRw === true ? undefined : options.memRw.bit);
    this.#protocolFeatures =
      FRAMEWORK_PROTOCOL_FEATURES |
      (device.getConfig ? ProtocolFeature.CONFIG : 0n) |
      (device.shmemRegions ? this.#dialect.shmemFeature : 0n) |
      this.#memRwMask;
  }

  /** Virtio features offered in GET_FEATURES. */
  get offeredFeatures(): bigint {
    return this.#features;
  }

  /** Protocol features offered in GET_PROTOCOL_FEATURES. */
  get offeredProtocolFeatures(): bigint {
    return this.#protocolFeatures;
  }

  /** True while the device runs: a ring started and not stopped since (see the class notes). */
  get running(): boolean {
    return this.#running;
  }

  /** Protocol features the front-end acknowledged (SET_PROTOCOL_FEATURES). */
  get ackedProtocolFeatures(): bigint {
    return this.#ackedProtocol;
  }

  /** The back-end channel client, once SET_BACKEND_REQ_FD arrived. */
  get client(): BackendClient | undefined {
    return this.#client;
  }

  /**
   * Serve requests until the front-end disconnects or is dropped; then stop the rings, unmap guest
   * memory, close every fd, wait for the device's running handlers to return, and reset the device.
   * Never rejects.
   */
  async run(): Promise<void> {
    let end: BackendEvent = { kind: "disconnected" };
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
      end = { kind: "dropped", error: err instanceof Drop ? err.error : new BackendError("PROTOCOL", `dispatcher: ${String(err)}`, {}, { cause: err }) };
    } finally {
      this.#teardown();
      // The same device object serves the next connection: its handlers must have returned (they
      // fail fast now that the channel and rings are gone) before it is reset and the next comes.
      await this.#quiesce();
      this.#hook(() => this.#device.reset?.());
      // Reported after the teardown, so a listener sees the fds and mappings already released.
      this.#emit(end);
    }
  }

  /** Drop the front-end now (the `run` promise then resolves). Idempotent. */
  close(): void {
    this.#ep.close();
  }

  #emit(e: BackendEvent): void {
    try {
      this.#opts.onEvent?.(e);
    } catch {
      // A throwing listener must not take the connection (or the server) down.
    }
  }

  async #handle(msg: ReceivedMessage): Promise<void> {
    this.#emit({ kind: "request", name: tryMessageSpec("frontend", msg.request, this.#dialect)?.name ?? `UNKNOWN(${msg.request})`, flags: msg.flags, size: msg.payload.length, fds: msg.fds.length });
    let decoded: DecodedFrontendRequest;
    try {
      decoded = decodeMessage("frontend", msg.frame, this.#dialect);
    } catch (err) {
      await this.#refuse(msg, err as VhostUserError);
      return;
    }
    const spec = tryMessageSpec("frontend", msg.request, this.#dialect);
    if (spec === undefined) return; // decodeMessage already refused unknown ids
    // PROTOCOL.md §1.3: an fd that comes with REM_MEM_REG (some front-ends send the region's) is
    // closed unused, not refused; the loop in run() closes it.
    const range = spec.name === "REM_MEM_REG" ? { min: 0, max: 1 } : expectedFdCount(spec.fds, decoded.value);
    if (msg.fds.length < range.min || msg.fds.length > range.max) {
      await this.#refuse(msg, protocolError(spec.name, `${msg.fds.length} fds attached, expected ${range.min === range.max ? range.min : `${range.min}..${range.max}`}`, { expected: range.max, actual: msg.fds.length }));
      return;
    }
    let reply: unknown;
    try {
      reply = await this.#dispatch(decoded, msg.fds);
    } catch (err) {
      if (err instanceof Drop) throw err;
      const e = isVhostUserError(err) ? err : new BackendError("PROTOCOL", `${spec.name.toLowerCase()}: ${String(err)}`, { request: spec.name }, { cause: err });
      await this.#refuse(msg, e);
      return;
    }
    if (spec.replyRule === "always") {
      const frame = encodeReply("frontend", spec.name as never, reply as never, this.#dialect);
      await sendReply(this.#ep, msg.request, frame.subarray(HEADER_SIZE));
    } else if ((msg.flags & HeaderFlag.NEED_REPLY) !== 0 && this.#negotiated(ProtocolFeature.REPLY_ACK)) {
      await sendAck(this.#ep, msg.request, 0n);
    }
  }

  /**
   * Failure path: an ack-rule request with NEED_REPLY gets status 1 and the connection stays up;
   * GET_CONFIG gets the spec's zero-size error reply; anything else drops the front-end.
   */
  async #refuse(msg: { request: number; flags: number }, error: VhostUserError): Promise<void> {
    const spec = tryMessageSpec("frontend", msg.request, this.#dialect);
    const name = spec?.name ?? `UNKNOWN(${msg.request})`;
    if (spec?.id === FrontendRequest.GET_CONFIG) {
      this.#emit({ kind: "rejected", name, error });
      await sendReply(this.#ep, msg.request, new Uint8Array(0));
      return;
    }
    if ((msg.flags & HeaderFlag.NEED_REPLY) !== 0 && this.#negotiated(ProtocolFeature.REPLY_ACK) && (spec === undefined || spec.replyRule !== "always")) {
      this.#emit({ kind: "rejected", name, error });
      await sendAck(this.#ep, msg.request, 1n);
      return;
    }
    throw new Drop(error);
  }

  #negotiated(f: bigint): boolean {
    return (this.#ackedProtocol & f) !== 0n;
  }

  #requireProtocol(request: string, f: bigint, what: string): void {
    if (!this.#negotiated(f)) throw new BackendError("NOT_NEGOTIATED", `${request.toLowerCase()}: ${what} not negotiated`, { request });
  }

  #vring(request: string, index: number): Vring {
    const v = this.#vrings[index];
    if (v === undefined) throw protocolError(request, `vring ${index} out of range (${this.#vrings.length} queues)`, { actual: index, expected: this.#vrings.length });
    return v;
  }

  /** Handle one decoded request; returns the reply value for always-replied requests. */
  async #dispatch(m: DecodedFrontendRequest, fds: readonly OwnedFd[]): Promise<unknown> {
    switch (m.name) {
      case "GET_FEATURES":
        return this.#features;
      case "SET_FEATURES": {
        const extra = m.value & ~this.#features;
        if (extra !== 0n) throw protocolError(m.name, `features 0x${extra.toString(16)} were not offered`, { actual: m.value, expected: this.#features });
        this.#ackedFeatures = m.value;
        if ((m.value & VirtioFeature.PROTOCOL_FEATURES) === 0n) for (const v of this.#vrings) v.enabled = true;
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
        if (extra !== 0n) throw protocolError(m.name, `protocol features 0x${extra.toString(16)} were not offered`, { actual: m.value, expected: this.#protocolFeatures });
        this.#ackedProtocol = m.value;
        return undefined;
      }
      case "GET_QUEUE_NUM":
        return BigInt(this.#vrings.length);
      case "GET_MAX_MEM_SLOTS":
        return BigInt(this.#memory.maxSlots);
      case "SET_MEM_TABLE": {
        const regions = m.value.regions.map((r, i) => this.#regionWithFd(m.name, r, fds[i]));
        // No waiting for queue handlers (one may be waiting for a back-end request's reply while the
        // front-end waits for this one): they hold pins, so the old mappings outlive their views.
        this.#memory.setMemTable(regions);
        this.#remapQueues();
        return undefined;
      }
      case "ADD_MEM_REG":
        this.#requireProtocol(m.name, ProtocolFeature.CONFIGURE_MEM_SLOTS, "CONFIGURE_MEM_SLOTS");
        this.#memory.addRegion(this.#regionWithFd(m.name, m.value, fds[0]));
        this.#remapQueues();
        return undefined;
      case "REM_MEM_REG":
        this.#requireProtocol(m.name, ProtocolFeature.CONFIGURE_MEM_SLOTS, "CONFIGURE_MEM_SLOTS");
        // Answered at once, as SET_MEM_TABLE: the unmap waits for the handlers' pins instead.
        this.#memory.removeRegion({ guestPhysAddr: m.value.guestPhysAddr, memorySize: m.value.memorySize, userspaceAddr: m.value.userAddr });
        this.#remapQueues();
        return undefined;
      case "SET_VRING_NUM": {
        const v = this.#vring(m.name, m.value.index);
        if (v.started) throw protocolError(m.name, `vring ${v.index} is started`);
        const max = Math.min(this.#device.maxQueueSize, MAX_VRING_SIZE);
        if (!isPowerOfTwo(m.value.num) || m.value.num > max) throw protocolError(m.name, `queue size ${m.value.num} is not a power of two <= ${max}`, { actual: m.value.num, expected: max });
        v.size = m.value.num;
        return undefined;
      }
      case "SET_VRING_ADDR": {
        const v = this.#vring(m.name, m.value.index);
        if (v.started) throw protocolError(m.name, `vring ${v.index} is started`);
        if ((m.value.flags & VRING_F_LOG) !== 0) throw new BackendError("NOT_NEGOTIATED", "set_vring_addr: VHOST_VRING_F_LOG without LOG_ALL", { request: m.name });
        const addresses: RingAddresses = { desc: m.value.descAddr, avail: m.value.availAddr, used: m.value.usedAddr };
        if (addresses.desc % 16n !== 0n || addresses.avail % 2n !== 0n || addresses.used % 4n !== 0n) {
          throw protocolError(m.name, `misaligned ring: desc 0x${addresses.desc.toString(16)} avail 0x${addresses.avail.toString(16)} used 0x${addresses.used.toString(16)}`);
        }
        v.addresses = addresses;
        return undefined;
      }
      case "SET_VRING_BASE": {
        const v = this.#vring(m.name, m.value.index);
        if (v.started) throw protocolError(m.name, `vring ${v.index} is started`);
        v.base = decodeSplitVringBase(m.value.num).nextAvailIdx;
        return undefined;
      }
      case "GET_VRING_BASE": {
        const v = this.#vring(m.name, m.value.index);
        this.#beginStop();
        await this.#quiesce();
        return { index: v.index, num: this.#stopRing(v) };
      }
      case "SET_VRING_KICK": {
        const v = this.#vring(m.name, m.value.index);
        if (m.value.noFd) throw new BackendError("UNSUPPORTED", "set_vring_kick: polling mode (no kick fd) is not supported", { request: m.name });
        const kick = this.#eventFd(fds[0]);
        v.kick?.close(); // ends the old fd's kick loop
        v.kick = kick;
        if (!v.started) {
          this.#startRing(v);
          return undefined;
        }
        // A new kick fd for a running ring (a front-end switching notifiers): only the kick is
        // replaced, as in libvhost-user; the queue, its call and err fds carry on.
        void this.#kickLoop(v, kick);
        this.#schedule(v);
        return undefined;
      }
      case "SET_VRING_CALL": {
        const v = this.#vring(m.name, m.value.index);
        v.call?.close();
        v.call = m.value.noFd ? undefined : this.#eventFd(fds[0]);
        // A started ring may have published used entries while it had no call fd (or signalled the
        // old one the driver no longer watches): signal the new fd once so that no completion goes
        // unnoticed, as libvhost-user does. A spurious interrupt is harmless.
        try {
          if (v.started) v.call?.signal();
        } catch (err) {
          v.call?.close(); // not a usable eventfd: refused, not installed
          v.call = undefined;
          throw err;
        }
        return undefined;
      }
      case "SET_VRING_ERR": {
        const v = this.#vring(m.name, m.value.index);
        v.err?.close();
        v.err = m.value.noFd ? undefined : this.#eventFd(fds[0]);
        return undefined;
      }
      case "SET_VRING_ENABLE": {
        const v = this.#vring(m.name, m.value.index);
        if (m.value.num > 1) throw protocolError(m.name, `enable value ${m.value.num} is not 0 or 1`, { actual: m.value.num });
        if (this.#ackedFeatures !== undefined && (this.#ackedFeatures & VirtioFeature.PROTOCOL_FEATURES) === 0n) {
          throw new BackendError("NOT_NEGOTIATED", "set_vring_enable: VHOST_USER_F_PROTOCOL_FEATURES not in SET_FEATURES", { request: m.name });
        }
        v.enabled = m.value.num === 1;
        if (v.enabled) this.#schedule(v);
        return undefined;
      }
      case "SET_BACKEND_REQ_FD": {
        this.#requireProtocol(m.name, ProtocolFeature.BACKEND_REQ, "BACKEND_REQ");
        const fd = fds[0];
        if (fd === undefined) throw protocolError(m.name, "no fd");
        // SHMEM.md §7.2 rule 6: only MEM_READ/MEM_WRITE replies may pass the usual payload cap, and
        // only once the gate is negotiated.
        const memRw = this.#memRwMask !== 0n && this.#negotiated(this.#memRwMask);
        const ep = new Endpoint(new OwnedFd(fd.transfer()), { ...(memRw ? { maxPayload: MEM_RW_MAX_PAYLOAD } : {}), fdsAllowed: () => 1, ...(this.#opts.reactor === undefined ? {} : { reactor: this.#opts.reactor }) });
        this.#client?.close();
        this.#client = new BackendClient(ep, {
          dialect: this.#dialect,
          // crosvm legacy's mandatory replies cover its SHMEM messages only (the client sends those
          // expecting a reply anyway); everything else follows the REPLY_ACK rule.
          replyAck: this.#negotiated(ProtocolFeature.REPLY_ACK),
          shmem: this.#negotiated(this.#dialect.shmemFeature),
          sendFd: this.#negotiated(ProtocolFeature.BACKEND_SEND_FD),
          config: this.#negotiated(ProtocolFeature.CONFIG),
          memRw,
          isRunning: () => this.#running,
          ...(this.#opts.timeoutMs === undefined ? {} : { timeoutMs: this.#opts.timeoutMs }),
        });
        return undefined;
      }
      case "GET_CONFIG": {
        this.#requireProtocol(m.name, ProtocolFeature.CONFIG, "CONFIG");
        const get = this.#device.getConfig;
        if (!get) throw new BackendError("UNSUPPORTED", "get_config: the device has no config space", { request: m.name });
        const data = get.call(this.#device, m.value.offset, m.value.data.byteLength);
        if (data.byteLength !== m.value.data.byteLength) throw protocolError(m.name, `device returned 0x${data.byteLength.toString(16)} bytes for 0x${m.value.data.byteLength.toString(16)}`);
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
        this.#updateRunning();
        return undefined;
      case "GET_STATUS":
        this.#requireProtocol(m.name, ProtocolFeature.STATUS, "STATUS");
        return this.#status;
      case "RESET_DEVICE":
        this.#requireProtocol(m.name, ProtocolFeature.RESET_DEVICE, "RESET_DEVICE");
        await this.#stopAll();
        this.#ackedFeatures = undefined;
        this.#status = 0n;
        // "Reset all internal device state to the initial state": rings forget size, addresses
        // and base too (a ring restarted without SET_VRING_BASE starts at 0, not where it was).
        for (const v of this.#vrings) {
          v.size = 0;
          v.addresses = undefined;
          v.base = 0;
        }
        this.#hook(() => this.#device.reset?.());
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
      case "SET_LOG_BASE":
      case "SET_LOG_FD":
      case "SEND_RARP":
      case "NET_SET_MTU":
      case "IOTLB_MSG":
      case "SET_VRING_ENDIAN":
      case "CREATE_CRYPTO_SESSION":
      case "CLOSE_CRYPTO_SESSION":
      case "POSTCOPY_ADVISE":
      case "POSTCOPY_LISTEN":
      case "POSTCOPY_END":
      case "GET_INFLIGHT_FD":
      case "SET_INFLIGHT_FD":
      case "GPU_SET_SOCKET":
      case "VRING_KICK":
      case "GET_SHARED_OBJECT":
      case "SET_DEVICE_STATE_FD":
      case "CHECK_DEVICE_STATE":
      case "GET_VRING_BASE_SKIP_DRAIN": {
        const err = new BackendError("UNSUPPORTED", `${m.name.toLowerCase()}: its feature was not offered`, { request: m.name });
        if (tryMessageSpec("frontend", m.header.request, this.#dialect)?.replyRule === "always") throw new Drop(err);
        throw err;
      }
      default: {
        const unreachable: never = m;
        throw protocolError(String((unreachable as { name: string }).name), "unhandled request");
      }
    }
  }

  /** A region of SET_MEM_TABLE or ADD_MEM_REG (`request`, named in errors) with its fd. */
  #regionWithFd(request: string, r: MemoryRegion, fd: OwnedFd | undefined): { guestPhysAddr: bigint; memorySize: bigint; userspaceAddr: bigint; mmapOffset: bigint; fd: OwnedFd } {
    if (fd === undefined) throw protocolError(request, "region without an fd");
    if (r.mmapOffset % PAGE !== 0n) throw protocolError(request, `mmap_offset 0x${r.mmapOffset.toString(16)} not page-aligned`);
    return { guestPhysAddr: r.guestPhysAddr, memorySize: r.memorySize, userspaceAddr: r.userAddr, mmapOffset: r.mmapOffset, fd };
  }

  #eventFd(fd: OwnedFd | undefined): EventFd {
    if (fd === undefined) throw protocolError("SET_VRING_KICK", "no fd");
    return new EventFd(new OwnedFd(fd.transfer()), ...(this.#opts.reactor === undefined ? [] : [this.#opts.reactor]));
  }

  #startRing(v: Vring): void {
    if (v.size === 0 || v.addresses === undefined) throw protocolError("SET_VRING_KICK", `vring ${v.index} has no size or addresses yet`);
    const features = this.#ackedFeatures ?? 0n;
    const queue = new SplitQueue({
      size: v.size,
      memory: this.#memory,
      addresses: v.addresses,
      addressSpace: "user",
      eventIdx: (features & VirtioFeature.EVENT_IDX) !== 0n,
      indirect: (features & VirtioFeature.INDIRECT_DESC) !== 0n,
      maxIndirectLength: v.size,
      onBroken: (error) => this.#queueError(v, error),
    });
    queue.start(v.base);
    v.queue = queue;
    if ((features & VirtioFeature.PROTOCOL_FEATURES) === 0n && this.#ackedFeatures !== undefined) v.enabled = true;
    this.#stopped = false;
    const kick = v.kick;
    if (kick) void this.#kickLoop(v, kick);
    this.#updateRunning();
    this.#schedule(v);
  }

  /** Stops `v` (GET_VRING_BASE): returns the next avail index and drops the kick/call fds. */
  #stopRing(v: Vring): number {
    const q = v.queue;
    v.queue = undefined;
    v.waitingForMemory = false;
    if (q) v.base = q.stop();
    v.dropFds();
    return v.base;
  }

  /**
   * The front-end is stopping the device: not running from now on (the device's `stop` hook runs,
   * and no new SHMEM message may leave), and back-end requests a handler waits on are abandoned so
   * the handler can finish: QEMU reads the back-end channel only after its stop request is answered.
   */
  #beginStop(): void {
    this.#stopped = true;
    this.#updateRunning();
    this.#client?.abandon();
  }

  async #stopAll(): Promise<void> {
    this.#beginStop();
    await this.#quiesce();
    for (const v of this.#vrings) {
      this.#stopRing(v);
      v.enabled = false;
    }
  }

  async #kickLoop(v: Vring, kick: EventFd): Promise<void> {
    for (;;) {
      try {
        await kick.wait();
      } catch (err) {
        // Closed: replaced, stopped or disconnected. Anything else is a kick fd that is no eventfd
        // (a short read, EOF): the ring would stall silently, so it is reported as broken.
        if (v.kick === kick && !(isVhostUserError(err) && err.code === "CLOSED")) this.#queueError(v, err);
        return;
      }
      if (v.kick !== kick) return;
      this.#schedule(v);
    }
  }

  #schedule(v: Vring): void {
    if (!v.started || !v.enabled || v.waitingForMemory || this.#closed) return;
    if (v.busy) {
      v.again = true;
      return;
    }
    void this.#runQueue(v);
  }

  async #runQueue(v: Vring): Promise<void> {
    v.busy = true;
    this.#inflight++;
    // Views the handler holds stay mapped until it returns, whatever the front-end removes meanwhile.
    const unpin = this.#memory.pin();
    try {
      do {
        v.again = false;
        const q = v.queue;
        if (q === undefined || q.brokenBy !== undefined || v.waitingForMemory) break;
        const ctx: QueueContext = {
          index: v.index,
          queue: q,
          memory: this.#guestMemory(),
          notify: () => {
            if (v.queue === q && q.brokenBy === undefined && q.publishUsed()) v.call?.signal();
          },
        };
        for (;;) {
          q.disableNotification();
          await this.#device.processQueue(ctx);
          ctx.notify();
          if (v.queue !== q || !q.enableNotification()) break;
        }
      } while (v.again && v.started && v.enabled);
    } catch (err) {
      // Guest errors already broke the queue and were reported through onBroken.
      if (!isVirtqueueError(err) || v.queue?.brokenBy === undefined) this.#queueError(v, err);
    } finally {
      unpin();
      v.busy = false;
      if (--this.#inflight === 0) {
        const idle = this.#idle;
        this.#idle = [];
        for (const r of idle) r();
      }
    }
  }

  #queueError(v: Vring, err: unknown): void {
    try {
      v.err?.signal();
    } catch {
      // the err fd is gone (front-end closed it): the event below still reports the failure
    }
    this.#emit({ kind: "queue-broken", index: v.index, error: err });
  }

  /** Wait until no queue handler runs (before unmapping memory a handler might be using). */
  async #quiesce(): Promise<void> {
    while (this.#inflight > 0) await new Promise<void>((r) => this.#idle.push(r));
  }

  /**
   * After a memory-table change: re-map every started ring. One whose rings are no longer in the
   * table is suspended until a later change maps them again, then resumes where it stopped.
   */
  #remapQueues(): void {
    for (const v of this.#vrings) {
      const q = v.queue;
      if (!q || q.brokenBy !== undefined) continue;
      try {
        q.remap(this.#memory);
        if (!v.waitingForMemory) continue;
        q.start(); // at the avail index it stopped at; used.idx is read back from the ring
        v.waitingForMemory = false;
        this.#schedule(v); // what the driver queued meanwhile
      } catch (err) {
        // QEMU removes and re-adds a region it changes: a ring whose memory is gone waits for it.
        if (isVirtqueueError(err) && err.code === "RING_UNMAPPED") v.waitingForMemory = true;
        else if (isVirtqueueError(err) || isRegionError(err)) this.#queueError(v, err);
        else throw err;
      }
    }
  }

  /**
   * The memory devices see: the memory table, and — when vhostkit MEM_RW is negotiated — a
   * {@link FallbackMemory} over it that reaches addresses outside the table through MEM_READ /
   * MEM_WRITE on the back-end channel.
   */
  #guestMemory(): GuestMemory {
    if (this.#memRwMask === 0n || !this.#negotiated(this.#memRwMask)) return this.#memory;
    this.#guest ??= new FallbackMemory(this.#memory, () => this.#client);
    return this.#guest;
  }

  /**
   * Running = a ring started (SET_VRING_KICK) and none stopped since (GET_VRING_BASE, SET_STATUS 0,
   * reset). Front-ends start the rings only once the driver set DRIVER_OK; SET_STATUS(DRIVER_OK)
   * itself is not waited for, because QEMU 11.1.3's vhost-user-test-device negotiates STATUS but
   * never sends it (it sends FEATURES_OK only), and a device there could otherwise never map.
   */
  #updateRunning(): void {
    const now = !this.#closed && !this.#stopped && this.#vrings.some((v) => v.started);
    if (now === this.#running) return;
    this.#running = now;
    this.#emit({ kind: "running", running: now });
    if (now) {
      const client = this.#client;
      const ctx: DeviceContext = { features: this.#ackedFeatures ?? 0n, memory: this.#guestMemory(), client: client ?? noClient() };
      Promise.resolve()
        .then(() => this.#device.start?.(ctx))
        .catch((error: unknown) => this.#emit({ kind: "device-error", error }));
    } else {
      this.#hook(() => this.#device.stop?.());
    }
  }

  /** Runs a synchronous device hook; a throw is reported as `device-error`, never propagated. */
  #hook(f: () => void): void {
    try {
      f();
    } catch (error) {
      this.#emit({ kind: "device-error", error });
    }
  }

  #teardown(): void {
    this.#closed = true;
    for (const v of this.#vrings) {
      this.#stopRing(v);
      v.enabled = false;
    }
    this.#updateRunning();
    this.#client?.close();
    this.#client = undefined;
    this.#memory.dispose(); // handlers still running keep their views until they return (pins)
    this.#ep.close();
  }
}

/** The channel stand-in for a connection without SET_BACKEND_REQ_FD: every call fails with `NO_BACKEND_CHANNEL`. */
function noClient(): BackendChannel {
  const fail = (request: string) => () => Promise.reject(new BackendError("NO_BACKEND_CHANNEL", `${request}: the front-end sent no SET_BACKEND_REQ_FD`, { request: request.toUpperCase() }));
  return {
    canMap: false,
    shmemMap: fail("backend_shmem_map"),
    shmemUnmap: fail("backend_shmem_unmap"),
    configChanged: fail("backend_config_change_msg"),
    memRead: fail("backend_mem_read"),
    memReadInto: fail("backend_mem_read"),
    memWrite: fail("backend_mem_write"),
  };
}

/**
 * @internal
 * @returns the device's shared memory regions, validated (what GET_SHMEM_CONFIG answers).
 * @throws BackendError `BAD_DEVICE` when the device definition is invalid.
 */
export function checkDevice(d: DeviceBackend): readonly ShmemRegionSpec[] {
  const bad = (m: string) => new BackendError("BAD_DEVICE", `device: ${m}`);
  if (!Number.isInteger(d.queueCount) || d.queueCount < 1 || d.queueCount > 256) throw bad(`queueCount ${d.queueCount} not in 1..256`);
  if (!isPowerOfTwo(d.maxQueueSize) || d.maxQueueSize > MAX_VRING_SIZE) throw bad(`maxQueueSize ${d.maxQueueSize} is not a power of two <= ${MAX_VRING_SIZE}`);
  if (typeof d.features !== "bigint" || d.features < 0n || d.features >= 1n << 64n) throw bad("features must be a u64 bigint");
  // With ACCESS_PLATFORM ring and buffer addresses are IOVAs, translated through IOTLB_MSG, which
  // this framework does not implement (and MEM_READ/MEM_WRITE are defined on guest-physical
  // addresses only, SHMEM.md §7.2 rule 1): offering it would mistranslate every address.
  if ((d.features & VirtioFeature.ACCESS_PLATFORM) !== 0n) throw bad("VIRTIO_F_ACCESS_PLATFORM (bit 33) needs IOTLB support, which @vhostkit/backend does not have");
  const seen = new Set<number>();
  const regions = [...(d.shmemRegions?.() ?? [])].map((r) => ({ shmid: r.shmid, size: r.size }));
  for (const r of regions) {
    if (!Number.isInteger(r.shmid) || r.shmid < 0 || r.shmid > 255 || seen.has(r.shmid)) throw bad(`shmid ${r.shmid} invalid or repeated`);
    if (typeof r.size !== "bigint" || r.size <= 0n || r.size % PAGE !== 0n) throw bad(`shmid ${r.shmid}: size 0x${r.size.toString(16)} is not a non-zero page multiple`);
    seen.add(r.shmid);
  }
  return regions;
}
