/**
 * One vhost-user device driven by the front-end: negotiation (PROTOCOL.md §4.2), the back-end
 * channel, VIRTIO Shared Memory Regions, memory table, vrings, tear-down and failure.
 * @module
 */
import {
  Dialects,
  isWireError,
  ProtocolFeature,
  UPSTREAM,
  VirtioFeature,
  type Dialect,
  type DialectName,
  type MemoryRegion,
  MAX_MEM_TABLE_REGIONS,
  MEM_RW_MAX_PAYLOAD,
  vhostkitMemRwFeature,
} from "@vhostkit/wire";
import { Endpoint, socketPair, type RetryPolicy } from "@vhostkit/transport";
import { closeFd, dupCloexec } from "@vhostkit/transport/sys";
import { DeviceSharedMemory, isRegionError, type ShmemMappingEvent, type ShmemRegionInfo } from "@vhostkit/regions";
import { BackendRequestHandler, type BackendRequestOutcome } from "./backend-request-handler.js";
import { DriverQueue } from "./driver-queue.js";
import { asFrontendError, FrontendError, isFrontendError } from "./errors.js";
import { Frontend } from "./frontend.js";
import { mappingRegion, type Guest } from "./guest.js";
import type { TraceSink } from "./trace.js";

/**
 * Protocol features this front-end knows how to use (the dialect's SHMEM bit is added per
 * connection): MQ, REPLY_ACK, BACKEND_REQ, CONFIG, BACKEND_SEND_FD, RESET_DEVICE, CONFIGURE_MEM_SLOTS.
 */
export const SUPPORTED_PROTOCOL_FEATURES: bigint =
  ProtocolFeature.MQ |
  ProtocolFeature.REPLY_ACK |
  ProtocolFeature.BACKEND_REQ |
  ProtocolFeature.CONFIG |
  ProtocolFeature.BACKEND_SEND_FD |
  ProtocolFeature.RESET_DEVICE |
  ProtocolFeature.CONFIGURE_MEM_SLOTS;

/** Mask of the feature bits a driver may ask for: device-specific bits 0–23 and the ring bits 28, 29. */
export const DRIVER_FEATURE_MASK: bigint = (1n << 24n) - 1n | VirtioFeature.INDIRECT_DESC | VirtioFeature.EVENT_IDX;

/** Default cap on the total size of a device's shared memory regions (64 GiB of address space). */
export const DEFAULT_MAX_SHMEM_BYTES = 64n << 30n;

/** Options of {@link Guest.addDevice}. */
export interface DeviceOptions {
  /** Unix socket of the back-end (the front-end connects). Either this or `endpoint`. */
  readonly socketPath?: string;
  /** An already connected endpoint (ownership is taken), e.g. one end of a socketpair. */
  readonly endpoint?: Endpoint;
  /** Retry the connect while the back-end starts. */
  readonly retry?: RetryPolicy;
  /** SHMEM dialect of this device (default `"upstream"`). */
  readonly dialect?: Dialect | DialectName;
  /** Per-request timeout in milliseconds, control messages and virtqueue requests (default 5000). */
  readonly timeoutMs?: number;
  /** Protocol features the front-end may accept (default {@link SUPPORTED_PROTOCOL_FEATURES} + the dialect's SHMEM bit). */
  readonly protocolFeatures?: bigint;
  /** GET_CONFIG size in bytes (1–256); default: the largest size the back-end accepts (discovered). */
  readonly configSize?: number;
  /** Per-region cap on live SHMEM mappings (regions default 256). */
  readonly maxMappingsPerRegion?: number;
  /** Per-device cap on live SHMEM mappings (regions default 1024). */
  readonly maxMappingsPerDevice?: number;
  /**
   * Refuse SHMEM_MAP of memfds not sealed against shrinking (default true; see the regions
   * package's `requireSealedFds`: a truncated mapping would kill this process with SIGBUS).
   */
  readonly requireSealedFds?: boolean;
  /** Cap on the total advertised shared memory in bytes (default {@link DEFAULT_MAX_SHMEM_BYTES}). */
  readonly maxShmemBytes?: bigint;
  /** Receives every message on both sockets (`--verbose`). */
  readonly trace?: TraceSink;
  /**
   * Serve vhostkit's MEM_READ / MEM_WRITE extension (SHMEM.md §7.2) when the back-end offers it:
   * `true` for the default gate bit 63, or `{ bit }`. The back-end may then reach any guest RAM or
   * live shared-memory mapping of any device through the front-end. Default: off.
   */
  readonly memRw?: boolean | { readonly bit: number };
  /**
   * How this back-end reaches other devices' shared-memory mappings (SHMEM.md §8.2):
   * - `"propagate"`: eager propagation into its memory table only;
   * - `"mem-rw"`: never propagated; MEM_READ/MEM_WRITE only (needs `memRw` negotiated);
   * - `"auto"` (default): propagated while the back-end has room (memory slots, or 8 regions without
   *   CONFIGURE_MEM_SLOTS), MEM_READ/MEM_WRITE for the rest when negotiated.
   * When a new mapping of another device could not reach this back-end at all, that device's
   * SHMEM_MAP is refused with a clear reason instead of leaving this back-end blind to it.
   */
  readonly sharedMemoryPolicy?: "propagate" | "mem-rw" | "auto";
  /** Receives the outcome of every back-end request. */
  readonly onBackendRequest?: (outcome: BackendRequestOutcome) => void;
}

/** What a back-end advertised during negotiation (what `vhost-user-device probe` prints). */
export interface DeviceInfo {
  /** GET_FEATURES: offered virtio feature bits (u64). */
  readonly features: bigint;
  /** GET_PROTOCOL_FEATURES: offered protocol features (u64; 0 without VHOST_USER_F_PROTOCOL_FEATURES). */
  readonly protocolFeatures: bigint;
  /** The protocol features acknowledged with SET_PROTOCOL_FEATURES. */
  readonly ackedProtocolFeatures: bigint;
  /** GET_QUEUE_NUM (1 when MQ is not offered). */
  readonly queueNum: number;
  /** GET_MAX_MEM_SLOTS, or `undefined` without CONFIGURE_MEM_SLOTS. */
  readonly maxMemSlots: number | undefined;
  /** Device config space read with GET_CONFIG (little-endian bytes), or `undefined` without CONFIG or when refused. */
  readonly config: Uint8Array | undefined;
  /** VIRTIO Shared Memory Regions (non-zero sizes from GET_SHMEM_CONFIG), with their guest-physical placement. */
  readonly shmem: readonly ShmemRegionInfo[];
  /** The dialect used on this connection. */
  readonly dialect: Dialect;
}

/** Options of {@link Device.start}. */
export interface StartOptions {
  /** Device-specific and ring feature bits the driver wants; masked with what was offered and {@link DRIVER_FEATURE_MASK}. */
  readonly features?: bigint;
  /** Queue indices to set up (default `[0]`). */
  readonly queues?: readonly number[];
  /** Queue size, a power of two (default 64). */
  readonly queueSize?: number;
}

function resolveDialect(d: Dialect | DialectName | undefined): Dialect {
  if (d === undefined) return UPSTREAM;
  if (typeof d === "string") {
    const found = Dialects[d];
    if (found === undefined) throw new FrontendError("bad-argument", `unknown dialect ${String(d)}`, { actual: String(d) });
    return found;
  }
  return d;
}

function has(bits: bigint, mask: bigint): boolean {
  return (bits & mask) === mask && mask !== 0n;
}

/**
 * Sizes by shmid (non-zero only) from a GET_SHMEM_CONFIG or crosvm GET_SHARED_MEMORY_REGIONS reply
 * (SHMEM.md §3, §9 rule 6). The wire codec has already checked nregions (≤ 256, equal to the count
 * of non-zero sizes); {@link DeviceSharedMemory} checks ids and page multiples. Here: no shmid listed
 * twice (crosvm lists ids) and a bounded total, so a hostile reply cannot reserve the address space.
 * @throws FrontendError `bad-shmem-config`.
 */
function shmemSizes(raw: { readonly sizes: readonly bigint[] } | { readonly regions: readonly { readonly id: number; readonly length: bigint }[] }, maxTotal: bigint): { readonly sizes: Map<number, bigint>; readonly total: bigint } {
  const entries: [number, bigint][] = "sizes" in raw ? raw.sizes.map((s, i) => [i, s]) : raw.regions.map((r) => [r.id, r.length]);
  const out = new Map<number, bigint>();
  let total = 0n;
  for (const [id, size] of entries) {
    if (size === 0n) continue;
    if (out.has(id)) throw new FrontendError("bad-shmem-config", `shmid ${id} listed twice`, { request: "GET_SHMEM_CONFIG", actual: id });
    out.set(id, size);
    total += size;
  }
  if (total > maxTotal) throw new FrontendError("bad-shmem-config", `shared memory of 0x${total.toString(16)} bytes exceeds the cap 0x${maxTotal.toString(16)}`, { request: "GET_SHMEM_CONFIG", expected: maxTotal, actual: total });
  return { sizes: out, total };
}

/**
 * Finds the largest GET_CONFIG size (1–256) the back-end accepts: 256 first, then a binary
 * search (libvhost-user refuses more than the device struct with a zero-size reply, PROTOCOL.md §4.7).
 * @returns the config bytes, or `undefined` when every size is refused.
 */
async function discoverConfig(fe: Frontend): Promise<Uint8Array | undefined> {
  const full = await fe.getConfig(0, 256);
  if (full !== undefined) return full;
  let lo = 0;
  let hi = 256;
  let best: Uint8Array | undefined;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    const r = await fe.getConfig(0, mid);
    if (r !== undefined) {
      lo = mid;
      best = r;
    } else {
      hi = mid;
    }
  }
  return best;
}

/**
 * One vhost-user device. Created (and negotiated, steps 1–4 of PROTOCOL.md §4.2) by
 * {@link Guest.addDevice}; {@link Device.start} runs steps 5–9 (features, memory table, vrings,
 * enable, first kick), {@link Device.stop} step 10, {@link Device.close} stops, resets and releases.
 *
 * When the back-end dies (its channel reaches EOF, a request fails at the transport level or
 * times out) the device is marked failed: {@link Device.failure} resolves with a typed
 * {@link FrontendError}, pending requests reject with `device-failed`, its shared memory mappings
 * are dropped (PROT_NONE reservations stay until close). Other devices of the guest are not affected.
 */
export class Device {
  readonly #guest: Guest;
  readonly #fe: Frontend;
  readonly #o: DeviceOptions;
  readonly #timeoutMs: number;
  #handler: BackendRequestHandler | undefined;
  #shmem: DeviceSharedMemory | undefined;
  #info!: DeviceInfo;
  #queues = new Map<number, DriverQueue>();
  #ackedFeatures: bigint | undefined;
  /** The memory table was sent or is on its way: from then on mapping changes are propagated. */
  #memorySent = false;
  #failed: FrontendError | undefined;
  #closed = false;
  #closing = false;
  #resolveFailure!: (err: FrontendError) => void;
  readonly #failure: Promise<FrontendError>;
  readonly #configListeners = new Set<(config: Uint8Array | undefined) => void>();
  /** Mapping events of this device's regions waiting for the reply to go out first. */
  /** Resolves once the reply to the SHMEM request in progress went out (propagation waits for it). */
  #replied: { readonly promise: Promise<void>; readonly resolve: () => void } | undefined;
  /** Other devices' (and own) mappings in this back-end's table, by GPA, with a dup of the fd. */
  readonly #propagated = new Map<bigint, { readonly region: MemoryRegion; readonly fd: number }>();
  #propagation: Promise<void> = Promise.resolve();

  private constructor(guest: Guest, fe: Frontend, options: DeviceOptions) {
    this.#guest = guest;
    this.#fe = fe;
    this.#o = options;
    this.#timeoutMs = options.timeoutMs ?? 5000;
    this.#failure = new Promise((r) => (this.#resolveFailure = r));
  }

  /**
   * Connects and negotiates. Use {@link Guest.addDevice}.
   * @throws FrontendError `negotiation`, `protocol`, `refused`, `bad-shmem-config`, `disconnected`, `timeout`.
   * @internal
   */
  static async open(guest: Guest, options: DeviceOptions): Promise<Device> {
    const dialect = resolveDialect(options.dialect);
    const feOptions = { dialect, timeoutMs: options.timeoutMs ?? 5000, ...(options.trace === undefined ? {} : { trace: options.trace }) };
    let fe: Frontend;
    if (options.endpoint !== undefined) fe = new Frontend(options.endpoint, feOptions);
    else if (options.socketPath !== undefined) fe = await Frontend.connect(options.socketPath, { ...feOptions, ...(options.retry === undefined ? {} : { retry: options.retry }) });
    else throw new FrontendError("bad-argument", "a device needs socketPath or endpoint");
    const dev = new Device(guest, fe, options);
    try {
      await dev.#negotiate(dialect);
    } catch (err) {
      dev.#release();
      throw asFrontendError(err, "NEGOTIATE");
    }
    return dev;
  }

  async #negotiate(dialect: Dialect): Promise<void> {
    const fe = this.#fe;
    // 1. GET_FEATURES; VERSION_1 is required.
    const features = await fe.getFeatures();
    if (!has(features, VirtioFeature.VERSION_1)) throw new FrontendError("negotiation", `back-end does not offer VIRTIO_F_VERSION_1 (features 0x${features.toString(16)})`, { request: "GET_FEATURES", actual: features });
    // 2. Protocol features (legal before SET_FEATURES once bit 30 is offered).
    let protocolFeatures = 0n;
    let acked = 0n;
    if (has(features, VirtioFeature.PROTOCOL_FEATURES)) {
      protocolFeatures = await fe.getProtocolFeatures();
      const memRwBit = this.#memRwMask();
      const wanted = (this.#o.protocolFeatures ?? SUPPORTED_PROTOCOL_FEATURES | dialect.shmemFeature) | memRwBit;
      acked = protocolFeatures & wanted;
      // The extension travels on the back-end channel: never without BACKEND_REQ (SHMEM.md §7.2).
      if (!has(acked, ProtocolFeature.BACKEND_REQ)) acked &= ~memRwBit;
      await fe.setProtocolFeatures(acked);
      fe.replyAck = has(acked, ProtocolFeature.REPLY_ACK);
    }
    // 3. Queue count, memory slots, back-end channel.
    let queueNum = 1;
    if (has(acked, ProtocolFeature.MQ)) {
      const n = await fe.getQueueNum();
      if (n < 1n || n > 0xffffn) throw new FrontendError("protocol", `get_queue_num: ${n} queues`, { request: "GET_QUEUE_NUM", actual: n });
      queueNum = Number(n);
    }
    let maxMemSlots: number | undefined;
    if (has(acked, ProtocolFeature.CONFIGURE_MEM_SLOTS)) {
      const n = await fe.getMaxMemSlots();
      if (n > 0xffff_ffffn) throw new FrontendError("protocol", `get_max_mem_slots: ${n}`, { request: "GET_MAX_MEM_SLOTS", actual: n });
      maxMemSlots = Number(n);
    }
    let channel: Endpoint | undefined;
    if (has(acked, ProtocolFeature.BACKEND_REQ)) {
      const [mine, theirs] = socketPair();
      try {
        // MEM_READ/MEM_WRITE may carry up to 16 + 64 KiB; anything larger is a framing error.
        channel = new Endpoint(mine, this.#memRwMask() !== 0n && has(acked, this.#memRwMask()) ? { maxPayload: MEM_RW_MAX_PAYLOAD } : {});
        await fe.setBackendReqFd(theirs.fd);
      } catch (err) {
        channel?.close();
        throw err;
      } finally {
        theirs.close(); // PROTOCOL.md §4.6: the front-end closes its copy of the sent end.
      }
    }
    try {
      // 4. SET_OWNER, GET_CONFIG, GET_SHMEM_CONFIG.
      await fe.setOwner();
      let config: Uint8Array | undefined;
      if (has(acked, ProtocolFeature.CONFIG)) {
        const size = this.#o.configSize;
        if (size !== undefined && (!Number.isInteger(size) || size < 1 || size > 256)) throw new FrontendError("bad-argument", `config size ${size} not in 1..256`, { actual: size });
        config = size === undefined ? await discoverConfig(fe) : await fe.getConfig(0, size);
      }
      if (has(acked, dialect.shmemFeature)) {
        let raw;
        try {
          raw = await fe.getShmemConfigRaw();
        } catch (err) {
          // A reply the wire codec rejects (nregions > 256, nregions not matching the sizes).
          if (isFrontendError(err) && err.code === "protocol" && isWireError(err.cause)) throw new FrontendError("bad-shmem-config", err.message, err.detail, { cause: err.cause });
          throw err;
        }
        const { sizes, total } = shmemSizes(raw, this.#o.maxShmemBytes ?? DEFAULT_MAX_SHMEM_BYTES);
        if (sizes.size > 0) {
          try {
            this.#shmem = new DeviceSharedMemory({
              sizes,
              guestPhysAddr: this.#guest.placeShmem(total),
              ...(this.#o.maxMappingsPerRegion === undefined ? {} : { maxMappingsPerRegion: this.#o.maxMappingsPerRegion }),
              ...(this.#o.maxMappingsPerDevice === undefined ? {} : { maxMappingsPerDevice: this.#o.maxMappingsPerDevice }),
              ...(this.#o.requireSealedFds === undefined ? {} : { requireSealedFds: this.#o.requireSealedFds }),
            });
            this.#guest.space.addDevice(this.#shmem);
            // Every other device's bookkeeping follows the change at once (so the admission of the
            // next SHMEM_MAP, from any device, counts this one); their messages wait for our reply.
            this.#shmem.addListener((e) => this.#guest.propagate([e], this, this.#replyGate()));
          } catch (err) {
            if (isRegionError(err)) throw new FrontendError("bad-shmem-config", `shared memory regions refused: ${err.message}`, { request: "GET_SHMEM_CONFIG" }, { cause: err });
            throw err;
          }
        }
      }
      this.#info = {
        features,
        protocolFeatures,
        ackedProtocolFeatures: acked,
        queueNum,
        maxMemSlots,
        config,
        shmem: this.#shmem?.regions() ?? [],
        dialect,
      };
    } catch (err) {
      channel?.close();
      throw err;
    }
    if (channel !== undefined) {
      this.#handler = new BackendRequestHandler(channel, {
        dialect,
        replyAck: has(acked, ProtocolFeature.REPLY_ACK),
        backendSendFd: has(acked, ProtocolFeature.BACKEND_SEND_FD),
        ...(this.#shmem === undefined ? {} : { shmem: this.#shmem }),
        ...(this.#memRwMask() !== 0n && has(acked, this.#memRwMask()) ? { memAccess: this.#guest.space } : {}),
        onConfigChange: () => void this.refreshConfig().catch(() => undefined),
        onHandled: () => this.#flushEvents(),
        admitMapping: (writable) => this.#guest.admitMapping(this, writable),
        ...(this.#o.onBackendRequest === undefined ? {} : { onOutcome: this.#o.onBackendRequest }),
        ...(this.#o.trace === undefined ? {} : { trace: this.#o.trace }),
        onClose: (err) => this.#fail(err),
      });
      void this.#handler.start();
    }
  }

  get #policy(): "propagate" | "mem-rw" | "auto" {
    return this.#o.sharedMemoryPolicy ?? "auto";
  }

  /** True when vhostkit MEM_READ/MEM_WRITE was negotiated with this back-end. */
  get memRwNegotiated(): boolean {
    const m = this.#memRwMask();
    return m !== 0n && has(this.#info.ackedProtocolFeatures, m);
  }

  /**
   * Why a new shared-memory mapping of another device could not reach this back-end, or
   * `undefined` when it can (propagated into its table, or served by MEM_READ/MEM_WRITE). A
   * read-only mapping is never propagated to another back-end — a memory-table entry cannot be
   * read-only, so the back-end could write it (SHMEM.md §8.2) — and reaches it only through
   * MEM_READ/MEM_WRITE, which refuse the writes.
   * @internal used by {@link Guest.admitMapping}
   */
  reachRefusal(writable = true): string | undefined {
    if (!this.#memorySent || this.#failed !== undefined || this.#closed || this.#closing) return undefined;
    const policy = this.#policy;
    if (policy === "mem-rw") return this.memRwNegotiated ? undefined : "policy mem-rw but MEM_READ/MEM_WRITE was not negotiated";
    if (!writable) {
      if (policy === "auto" && this.memRwNegotiated) return undefined;
      return "a read-only mapping is never propagated (a memory-table entry cannot be read-only) and MEM_READ/MEM_WRITE is not in use";
    }
    const propagating = this.#guest.propagateSharedMemory;
    const used = this.#tableUsed;
    const cap = this.#tableCap;
    if (propagating && used < cap) return undefined;
    if (policy === "auto" && this.memRwNegotiated) return undefined;
    return propagating ? `no free memory slot (${used} of ${cap} used) and no MEM_READ/MEM_WRITE` : "propagation is off and MEM_READ/MEM_WRITE was not negotiated";
  }

  /** The vhostkit MEM_RW gate mask asked for (0n when the option is off). */
  #memRwMask(): bigint {
    const o = this.#o.memRw ?? (this.#o.sharedMemoryPolicy === "mem-rw" ? true : undefined);
    return o === undefined || o === false ? 0n : vhostkitMemRwFeature(o === true ? undefined : o.bit);
  }

  /** The options the device was opened with (used by {@link Guest.reconnect}). */
  get options(): DeviceOptions {
    return this.#o;
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

  /** The device's VIRTIO Shared Memory Regions, or `undefined` when it has none. */
  get sharedMemory(): DeviceSharedMemory | undefined {
    return this.#shmem;
  }

  /** The error that failed the device, or `undefined` while healthy. */
  get failed(): FrontendError | undefined {
    return this.#failed;
  }

  /** Resolves (never rejects) with the error when the device fails. */
  get failure(): Promise<FrontendError> {
    return this.#failure;
  }

  /** The queue set up by {@link Device.start} at `index`. @throws FrontendError `bad-argument`. */
  queue(index: number): DriverQueue {
    const q = this.#queues.get(index);
    if (q === undefined) throw new FrontendError("bad-argument", `queue ${index} is not set up`, { actual: index });
    return q;
  }

  /** Subscribes to config changes (BACKEND_CONFIG_CHANGE_MSG, then GET_CONFIG). @returns an unsubscribe function. */
  onConfigChange(listener: (config: Uint8Array | undefined) => void): () => void {
    this.#configListeners.add(listener);
    return () => this.#configListeners.delete(listener);
  }

  #check(): void {
    if (this.#closed) throw new FrontendError("closed", "device closed");
    if (this.#failed !== undefined) throw new FrontendError("device-failed", `device failed: ${this.#failed.message}`, this.#failed.detail, { cause: this.#failed });
  }

  async #guard<T>(fn: () => Promise<T>): Promise<T> {
    this.#check();
    try {
      return await fn();
    } catch (err) {
      const e = asFrontendError(err, "DEVICE");
      if (e.code === "disconnected" || e.code === "timeout" || e.code === "protocol") this.#fail(e);
      throw e;
    }
  }

  /** Re-reads the config space with GET_CONFIG (same size as before) and notifies listeners. */
  refreshConfig(): Promise<Uint8Array | undefined> {
    return this.#guard(async () => {
      const size = this.#info.config?.byteLength ?? this.#o.configSize;
      if (size === undefined || !has(this.#info.ackedProtocolFeatures, ProtocolFeature.CONFIG)) return undefined;
      const config = await this.#fe.getConfig(0, size);
      this.#info = { ...this.#info, config };
      for (const l of this.#configListeners) {
        try {
          l(config);
        } catch {
          // listeners must not break the device
        }
      }
      return config;
    });
  }

  /**
   * Steps 5–9 of PROTOCOL.md §4.2: SET_FEATURES (wanted ∩ offered | VERSION_1 | PROTOCOL_FEATURES),
   * the memory table (ADD_MEM_REG per RAM block with CONFIGURE_MEM_SLOTS, else SET_MEM_TABLE; user
   * addresses synthetic), per queue SET_VRING_NUM / BASE(0) / ADDR / CALL / KICK, SET_VRING_ENABLE,
   * then one kick per queue.
   *
   * A refused queue set-up (a queue size above the back-end's maximum, say) stops and releases the
   * queues of this call, so start() can be retried with other options; a refused memory table fails
   * the device (part of it may be in the back-end already).
   * @returns the queues, in the order given.
   * @throws FrontendError `bad-argument` (queue index ≥ queue count, already started), `negotiation`
   *   (not enough memory slots), `refused`, `protocol`, `disconnected`, `timeout`.
   */
  start(options: StartOptions = {}): Promise<readonly DriverQueue[]> {
    return this.#guard(async () => {
      const indices = options.queues ?? [0];
      const size = options.queueSize ?? 64;
      for (const i of indices) {
        if (!Number.isInteger(i) || i < 0 || i >= this.#info.queueNum || i > 255) throw new FrontendError("bad-argument", `queue ${i} not in 0..${this.#info.queueNum - 1}`, { actual: i, expected: this.#info.queueNum });
        if (this.#queues.has(i)) throw new FrontendError("bad-argument", `queue ${i} already started`, { actual: i });
      }
      const fe = this.#fe;
      const offered = this.#info.features;
      const features = ((options.features ?? 0n) & DRIVER_FEATURE_MASK & offered) | VirtioFeature.VERSION_1 | (offered & VirtioFeature.PROTOCOL_FEATURES);
      if (this.#ackedFeatures === undefined) {
        await fe.setFeatures(features);
        this.#ackedFeatures = features;
      }
      if (!this.#memorySent) {
        this.#checkTableRoom();
        // From here on propagate() records every mapping change and queues its message behind the
        // table (a map or unmap elsewhere while the table is on its way must not be lost).
        this.#memorySent = true;
        const table = this.#sendMemoryTable();
        this.#propagation = this.#propagation.then(() => table.catch(() => undefined));
        try {
          await table;
        } catch (err) {
          // Part of the table may be in the back-end, and a resend would overlap it: a back-end that
          // refuses guest RAM cannot be driven on this connection.
          const e = asFrontendError(err, "SET_MEM_TABLE");
          if (e.code === "refused") this.#fail(new FrontendError("refused", `the back-end refused guest memory: ${e.message}`, e.detail, { cause: e }));
          throw e;
        }
      }
      const out: DriverQueue[] = [];
      try {
        await this.#startQueues(indices, size, features, out);
      } catch (err) {
        await this.#unwindStart(out, err);
        throw err;
      }
      // PROTOCOL.md §4.5: always write one kick after set-up.
      for (const q of out) q.kick();
      return out;
    });
  }

  /** Per queue SET_VRING_NUM / BASE(0) / ADDR / CALL / KICK, then SET_VRING_ENABLE; each queue joins `out` as it is created. */
  async #startQueues(indices: readonly number[], size: number, features: bigint, out: DriverQueue[]): Promise<void> {
    const fe = this.#fe;
    const ram = this.#guest.ram;
    for (const index of indices) {
      const q = DriverQueue.create({
        index,
        size,
        memory: this.#guest.space,
        allocator: this.#guest.allocator,
        timeoutMs: this.#timeoutMs,
        eventIdx: ((this.#ackedFeatures ?? features) & VirtioFeature.EVENT_IDX) !== 0n,
        onFatal: (e) => this.#fail(e),
      });
      this.#queues.set(index, q);
      out.push(q);
      await fe.setVringNum(index, size);
      await fe.setVringBase(index, 0);
      await fe.setVringAddr({
        index,
        flags: 0,
        descAddr: ram.userAddressOf(q.rings.desc),
        usedAddr: ram.userAddressOf(q.rings.used),
        availAddr: ram.userAddressOf(q.rings.avail),
        logAddr: q.rings.used,
      });
      await fe.setVringFd("SET_VRING_CALL", index, q.callFd);
      await fe.setVringFd("SET_VRING_KICK", index, q.kickFd);
    }
    if (has(this.#ackedFeatures ?? features, VirtioFeature.PROTOCOL_FEATURES)) {
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
    if (isFrontendError(cause) && (cause.code === "disconnected" || cause.code === "timeout" || cause.code === "protocol")) return;
    try {
      for (const q of queues) await this.#fe.getVringBase(q.index);
    } catch (err) {
      const e = asFrontendError(err, "GET_VRING_BASE");
      if (e.code === "disconnected" || e.code === "timeout" || e.code === "protocol") this.#fail(e);
    } finally {
      for (const q of queues) {
        q.close();
        this.#queues.delete(q.index);
      }
    }
  }

  /**
   * Before the first memory table is sent (nothing recorded or sent yet when it throws): guest RAM
   * must fit the back-end's slots, and so must the live shared-memory mappings of other devices
   * unless MEM_READ/MEM_WRITE reaches the rest — a back-end that could not serve buffers in them
   * must not start silently.
   * @throws FrontendError `negotiation`.
   */
  #checkTableRoom(): void {
    const ramCount = this.#guest.ram.memoryTable().length;
    const cap = this.#tableCap;
    if (has(this.#info.ackedProtocolFeatures, ProtocolFeature.CONFIGURE_MEM_SLOTS) && cap < ramCount) {
      throw new FrontendError("negotiation", `back-end has ${cap} memory slots, guest RAM needs ${ramCount}`, { request: "GET_MAX_MEM_SLOTS", expected: ramCount, actual: cap });
    }
    if (!this.#guest.propagateSharedMemory || this.#policy === "mem-rw" || (this.#policy === "auto" && this.memRwNegotiated)) return;
    const need = ramCount + this.#guest.propagatableTo(this).length;
    if (need > cap) {
      throw new FrontendError("negotiation", `back-end has ${cap} memory slots: guest RAM and the live shared-memory mappings of other devices need ${need}, and MEM_READ/MEM_WRITE is not in use (policy ${this.#policy})`, { request: "GET_MAX_MEM_SLOTS", expected: cap, actual: need });
    }
  }

  async #sendMemoryTable(): Promise<void> {
    const ram = this.#guest.ramRegions();
    const slotted = has(this.#info.ackedProtocolFeatures, ProtocolFeature.CONFIGURE_MEM_SLOTS);
    if (this.#guest.propagateSharedMemory && this.#policy !== "mem-rw") {
      for (const m of this.#guest.propagatableTo(this)) {
        if (this.#tableUsed >= this.#tableCap) break; // the rest reaches it by MEM_READ/MEM_WRITE (#checkTableRoom)
        this.#keep(m.guestPhysAddr, mappingRegion(m), m.fd);
      }
    }
    if (!slotted) return this.#fe.setMemTable(...this.#fullTable(ram));
    // Taken before the first await: mapping changes from now on are queued by propagate() and sent
    // after the table (an unmap of one of these follows its ADD; its fd stays open until then).
    const initial = [...this.#propagated.values()];
    for (const [i, r] of ram.regions.entries()) await this.#fe.addMemReg(r, ram.fds[i] as number);
    for (const p of initial) await this.#fe.addMemReg(p.region, p.fd);
  }

  /** Memory-table entries this back-end takes: its slots with CONFIGURE_MEM_SLOTS, else SET_MEM_TABLE's 8. */
  get #tableCap(): number {
    return has(this.#info.ackedProtocolFeatures, ProtocolFeature.CONFIGURE_MEM_SLOTS) ? (this.#info.maxMemSlots ?? 0) : MAX_MEM_TABLE_REGIONS;
  }

  /** Memory-table entries in use: guest RAM plus the propagated mappings. */
  get #tableUsed(): number {
    return this.#guest.ram.memoryTable().length + this.#propagated.size;
  }

  /** RAM plus propagated mappings, at most 8 regions (SET_MEM_TABLE without CONFIGURE_MEM_SLOTS). */
  #fullTable(ram: { readonly regions: MemoryRegion[]; readonly fds: number[] }): [MemoryRegion[], number[]] {
    const regions = [...ram.regions];
    const fds = [...ram.fds];
    // #propagated never holds more than fits (#tableCap), so this stays within 8 regions.
    for (const p of this.#propagated.values()) {
      regions.push(p.region);
      fds.push(p.fd);
    }
    return [regions, fds];
  }

  /** Records a propagated mapping with a private dup of its fd (the mapping's own fd may close first). */
  #keep(gpa: bigint, region: MemoryRegion, fd: number): boolean {
    if (this.#propagated.has(gpa)) return false;
    const dup = dupCloexec(fd);
    if (dup < 0) return false;
    this.#propagated.set(gpa, { region, fd: dup });
    return true;
  }

  #forget(gpa: bigint): { readonly region: MemoryRegion; readonly fd: number } | undefined {
    const p = this.#propagated.get(gpa);
    if (p === undefined) return undefined;
    this.#propagated.delete(gpa);
    closeFd(p.fd);
    return p;
  }

  /** The promise the propagation of a change made now waits for: the reply to the current request. */
  #replyGate(): Promise<void> {
    if (this.#replied === undefined) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.#replied = { promise, resolve };
    }
    return this.#replied.promise;
  }

  /** After the reply to the back-end that mapped or unmapped (or on reset): release the propagation. */
  #flushEvents(): void {
    const r = this.#replied;
    this.#replied = undefined;
    r?.resolve();
  }

  /**
   * Eager propagation (SHMEM.md §8.2): puts new mappings into this back-end's memory table and
   * takes removed ones out, in order, without ever blocking the back-end channel that produced them
   * (the updates are queued on this device's own connection). Mappings that do not fit (no free
   * slot, or more than 8 regions without CONFIGURE_MEM_SLOTS) are not propagated. A refused addition
   * drops that entry; a refused removal fails this device (its table would keep a stale range), as
   * does a transport failure — this device only.
   * @internal
   */
  propagate(events: readonly ShmemMappingEvent[], after: Promise<void> = Promise.resolve()): void {
    if (!this.#memorySent || this.#failed !== undefined || this.#closed || this.#closing || this.#policy === "mem-rw") return;
    const slotted = has(this.#info.ackedProtocolFeatures, ProtocolFeature.CONFIGURE_MEM_SLOTS);
    // The bookkeeping (#propagated) follows the events at once, in order; only the messages wait in
    // the queue. A map, unmap and re-map of the same address queued together therefore become ADD,
    // REM, ADD — never a REM of an entry a later map silently reused.
    const work: { readonly run: () => Promise<void>; readonly done?: () => void; readonly refused?: () => void }[] = [];
    for (const e of events) {
      const gpa = e.mapping.guestPhysAddr as bigint;
      if (e.kind === "map") {
        if (this.#tableUsed >= this.#tableCap || !this.#keep(gpa, mappingRegion(e.mapping), e.mapping.fd)) continue;
        const p = this.#propagated.get(gpa) as { region: MemoryRegion; fd: number };
        work.push({
          run: slotted ? () => this.#fe.addMemReg(p.region, p.fd) : () => this.#fe.setMemTable(...this.#fullTable(this.#guest.ramRegions())),
          // The back-end does not have it: free its slot and fd (unless an unmap already took it out).
          refused: () => {
            if (this.#propagated.get(gpa) === p) this.#forget(gpa);
          },
        });
      } else {
        const p = this.#propagated.get(gpa);
        if (p === undefined) continue;
        this.#propagated.delete(gpa);
        work.push({
          run: slotted ? () => this.#fe.remMemReg(p.region) : () => this.#fe.setMemTable(...this.#fullTable(this.#guest.ramRegions())),
          // The private dup stays open until the REM (or the ADD queued before it) has been sent.
          done: () => closeFd(p.fd),
          // The back-end keeps translating a range that no longer holds this mapping (a later map
          // there would reach it as the old bytes): its table cannot be trusted any more.
          refused: () => this.#fail(new FrontendError("refused", `the back-end refused to remove gpa 0x${gpa.toString(16)} from its memory table after that mapping went away: its table no longer matches guest memory`, { request: slotted ? "REM_MEM_REG" : "SET_MEM_TABLE" })),
        });
      }
    }
    for (const w of work) {
      this.#propagation = this.#propagation.then(async () => {
        try {
          await after; // reply-first (SHMEM.md §8.2): the mapper's reply goes out before any table update
          if (this.#failed !== undefined || this.#closed) return;
          await w.run();
        } catch (err) {
          const e = asFrontendError(err, "PROPAGATE");
          if (e.code === "disconnected" || e.code === "timeout" || e.code === "protocol") this.#fail(e);
          else if (e.code === "refused") w.refused?.();
        } finally {
          w.done?.();
        }
      });
    }
  }

  /** Resolves when every queued memory-table propagation was sent and answered (for tests). */
  propagationSettled(): Promise<void> {
    return this.#propagation;
  }

  /**
   * Step 10: SET_VRING_ENABLE(0) and GET_VRING_BASE per started queue (which stops the ring), then
   * releases the queues.
   * @returns the next avail index the back-end reported per queue index.
   * @throws FrontendError `protocol`, `disconnected`, `timeout`, `refused`.
   */
  stop(): Promise<ReadonlyMap<number, number>> {
    return this.#guard(async () => {
      const bases = new Map<number, number>();
      const indices = [...this.#queues.keys()];
      try {
        if (this.#ackedFeatures !== undefined && has(this.#ackedFeatures, VirtioFeature.PROTOCOL_FEATURES)) {
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

  #fail(err: FrontendError): void {
    if (this.#failed !== undefined || this.#closed) return;
    this.#failed = isFrontendError(err) ? err : asFrontendError(err, "DEVICE");
    for (const q of this.#queues.values()) q.fail(this.#failed);
    this.#resetShmem();
    this.#handler?.close();
    this.#fe.close();
    this.#resolveFailure(this.#failed);
  }

  /** Drops this device's mappings and tells the other devices (their tables lose the entries). */
  #resetShmem(): void {
    this.#shmem?.reset();
    this.#flushEvents();
  }

  #release(): void {
    for (const gpa of [...this.#propagated.keys()]) this.#forget(gpa);
    this.#handler?.close();
    this.#fe.close();
    for (const q of this.#queues.values()) q.close();
    this.#queues.clear();
    if (this.#shmem !== undefined) {
      this.#guest.space.removeDevice(this.#shmem);
      this.#shmem.dispose();
      this.#shmem = undefined;
    }
  }

  /**
   * Tear-down: stops started queues (GET_VRING_BASE), RESET_DEVICE (RESET_OWNER when the back-end
   * lacks it, as QEMU does), drops every
   * shared memory mapping, closes both sockets and releases rings and reservations. Errors from a
   * dead back-end are ignored. Idempotent.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    if (this.#failed === undefined) {
      try {
        if (this.#queues.size > 0) await this.stop();
        // As QEMU's vhost_user_reset_device: RESET_DEVICE when negotiated, else RESET_OWNER.
        if (has(this.#info.ackedProtocolFeatures, ProtocolFeature.RESET_DEVICE)) await this.#fe.resetDevice();
        else await this.#fe.resetOwner();
      } catch {
        // the back-end may be gone; tear-down continues
      }
    }
    this.#closing = true;
    this.#resetShmem();
    await this.#propagation;
    this.#closed = true;
    this.#release();
    this.#guest.detach(this);
  }
}
