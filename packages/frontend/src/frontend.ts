/**
 * The sending side of front-end requests (docs/architecture.md#protocol-roles: `frontend.ts` sends front-end
 * requests): one connection to one back-end, with a typed method per request used by vhostkit.
 * @module
 */
import {
  DeviceStateDirection,
  decodeReply,
  encodeMessage,
  expectedFdCount,
  FrontendRequest,
  HEADER_SIZE,
  HeaderFlag,
  requestName,
  tryMessageSpec,
  UPSTREAM,
  type Dialect,
  type FrontendReplyValue,
  type FrontendRequestName,
  type FrontendRequestValue,
  type InflightInfo,
  type MemoryRegion,
  type VringAddr,
} from "@vhostkit/wire";
import { callHook, connect, RequestChannel, type Endpoint, type OwnedFd, type ReceivedMessage, type RetryPolicy } from "@vhostkit/transport";
import { asFrontendError, FrontendError } from "./errors.js";
import type { TraceSink } from "./trace.js";

/** Options of a {@link Frontend} connection. */
export interface FrontendOptions {
  /** SHMEM dialect of this connection (default {@link UPSTREAM}). */
  readonly dialect?: Dialect;
  /** Per-request timeout in milliseconds (default 5000). */
  readonly timeoutMs?: number;
  /** Receives every message sent and received on this socket. */
  readonly trace?: TraceSink;
}

/** Options of {@link Frontend.connect}. */
export interface FrontendConnectOptions extends FrontendOptions {
  /** Retry while the back-end is still starting (ENOENT / ECONNREFUSED). */
  readonly retry?: RetryPolicy;
}

/**
 * One vhost-user connection, front-end side. Requests are serialised (at most one outstanding, as
 * every implementation expects, docs/protocol.md#message-header): concurrent calls wait their turn instead of
 * failing. Replies are checked against the wire message table: id echoed, flags exactly 0x5,
 * payload size and layout, and fd count (unexpected fds are closed and the reply rejected).
 *
 * Ack-rule requests ask for a REPLY_ACK status only once {@link Frontend.replyAck} is set (after
 * REPLY_ACK was negotiated, docs/protocol.md#reply-rules); a non-zero status throws `REFUSED`.
 *
 * Owns the endpoint: {@link Frontend.close} closes it, and so does any fatal transport error.
 */
export class Frontend {
  readonly #ep: Endpoint;
  readonly #ch: RequestChannel;
  readonly #trace: TraceSink | undefined;
  #tail: Promise<unknown> = Promise.resolve();
  /** The SHMEM dialect of this connection. */
  readonly dialect: Dialect;

  /**
   * @param endpoint - a connected endpoint; ownership is taken.
   * @param options - dialect, timeout, tracing.
   */
  constructor(endpoint: Endpoint, options: FrontendOptions = {}) {
    this.#ep = endpoint;
    this.dialect = options.dialect ?? UPSTREAM;
    this.#ch = new RequestChannel(endpoint, { timeoutMs: options.timeoutMs ?? 5000 });
    this.#trace = options.trace;
  }

  /**
   * Connects to the back-end socket at `path`.
   * @throws FrontendError `DISCONNECTED` when the socket cannot be reached (after the retries).
   */
  static async connect(path: string, options: FrontendConnectOptions = {}): Promise<Frontend> {
    let ep: Endpoint;
    try {
      ep = await connect(path, options.retry === undefined ? {} : { retry: options.retry });
    } catch (err) {
      throw asFrontendError(err, "CONNECT", { actual: path });
    }
    return new Frontend(ep, options);
  }

  /** REPLY_ACK negotiated: ack-rule requests set NEED_REPLY and wait for the status. */
  get replyAck(): boolean {
    return this.#ch.replyAck;
  }

  /** Sets whether REPLY_ACK was negotiated (call after SET_PROTOCOL_FEATURES). */
  set replyAck(on: boolean) {
    this.#ch.replyAck = on;
  }

  /** True once the connection is closed (by {@link Frontend.close} or a fatal error). */
  get closed(): boolean {
    return this.#ep.closed;
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#tail.then(fn, fn);
    this.#tail = run.catch(() => undefined);
    return run;
  }

  #encode<N extends FrontendRequestName>(name: N, value: FrontendRequestValue<N>): Uint8Array {
    // encodeMessage validates the value; the channel writes its own header.
    return encodeMessage("frontend", name, HeaderFlag.VERSION, value, this.dialect).subarray(HEADER_SIZE);
  }

  #traceSend(id: number, flags: number, size: number, fds: number): void {
    callHook(this.#trace, { channel: "frontend", direction: "send", name: requestName("frontend", id), flags, size, fds });
  }

  /**
   * Sends an always-replied request and returns the decoded reply (docs/protocol.md#front-end-requests).
   * Reply fds the table allows are returned (owned by the caller); any others are closed and the
   * reply rejected.
   * @throws FrontendError `PROTOCOL`, `DISCONNECTED`, `TIMEOUT`.
   */
  call<N extends FrontendRequestName>(
    name: N,
    value: FrontendRequestValue<N>,
    fds: readonly number[] = [],
  ): Promise<{ readonly value: FrontendReplyValue<N>; readonly fds: readonly OwnedFd[]; readonly size: number }> {
    return this.#serial(async () => {
      const id = FrontendRequest[name];
      const payload = this.#encode(name, value);
      let reply: ReceivedMessage | undefined;
      try {
        this.#traceSend(id, HeaderFlag.VERSION, payload.byteLength, fds.length);
        reply = await this.#ch.request(id, payload, { expectReply: true, fds });
      } catch (err) {
        throw asFrontendError(err, name);
      }
      if (reply === undefined) throw new FrontendError("PROTOCOL", `${name.toLowerCase()}: no reply`, { request: name });
      callHook(this.#trace, { channel: "frontend", direction: "recv", name, flags: reply.flags, size: reply.payload.byteLength, fds: reply.fds.length });
      return this.#decode(name, reply);
    });
  }

  #decode<N extends FrontendRequestName>(name: N, reply: ReceivedMessage): { value: FrontendReplyValue<N>; fds: readonly OwnedFd[]; size: number } {
    try {
      const decoded = decodeReply("frontend", reply.frame, this.dialect);
      const spec = tryMessageSpec("frontend", FrontendRequest[name], this.dialect);
      const range = expectedFdCount(spec?.replyFds ?? "none", decoded.value);
      if (reply.fds.length < range.min || reply.fds.length > range.max) {
        throw new FrontendError("PROTOCOL", `${name.toLowerCase()}: reply carries ${reply.fds.length} fds, expected ${range.min}..${range.max}`, {
          request: name,
          expected: range.max,
          actual: reply.fds.length,
        });
      }
      return { value: decoded.value as FrontendReplyValue<N>, fds: reply.fds, size: reply.payload.byteLength };
    } catch (err) {
      for (const f of reply.fds) f.close();
      throw asFrontendError(err, name);
    }
  }

  /**
   * Sends an ack-rule request; with REPLY_ACK negotiated waits for the status.
   * @param fds - borrowed, attached to the header.
   * @throws FrontendError `REFUSED` (non-zero status), `PROTOCOL`, `DISCONNECTED`, `TIMEOUT`.
   */
  ack<N extends FrontendRequestName>(name: N, value: FrontendRequestValue<N>, fds: readonly number[] = []): Promise<void> {
    return this.#serial(async () => {
      const id = FrontendRequest[name];
      const payload = this.#encode(name, value);
      let status: bigint;
      try {
        const flags = this.#ch.replyAck ? HeaderFlag.VERSION | HeaderFlag.NEED_REPLY : HeaderFlag.VERSION;
        this.#traceSend(id, flags, payload.byteLength, fds.length);
        status = await this.#ch.requestAck(id, payload, { fds });
        if (this.#ch.replyAck)
          callHook(this.#trace, { channel: "frontend", direction: "recv", name, flags: HeaderFlag.VERSION | HeaderFlag.REPLY, size: 8, fds: 0 });
      } catch (err) {
        throw asFrontendError(err, name);
      }
      if (status !== 0n)
        throw new FrontendError("REFUSED", `${name.toLowerCase()}: back-end answered status 0x${status.toString(16)}`, { request: name, actual: status });
    });
  }

  /** GET_FEATURES: the virtio feature bits the back-end offers (u64). */
  async getFeatures(): Promise<bigint> {
    return (await this.call("GET_FEATURES", undefined)).value;
  }

  /** SET_FEATURES (u64). */
  setFeatures(features: bigint): Promise<void> {
    return this.ack("SET_FEATURES", features);
  }

  /** GET_PROTOCOL_FEATURES (u64); needs VHOST_USER_F_PROTOCOL_FEATURES offered. */
  async getProtocolFeatures(): Promise<bigint> {
    return (await this.call("GET_PROTOCOL_FEATURES", undefined)).value;
  }

  /** SET_PROTOCOL_FEATURES (u64). */
  setProtocolFeatures(features: bigint): Promise<void> {
    return this.ack("SET_PROTOCOL_FEATURES", features);
  }

  /** SET_OWNER. */
  setOwner(): Promise<void> {
    return this.ack("SET_OWNER", undefined);
  }

  /** GET_QUEUE_NUM (PF MQ): the number of queues the back-end supports. */
  async getQueueNum(): Promise<bigint> {
    return (await this.call("GET_QUEUE_NUM", undefined)).value;
  }

  /** GET_MAX_MEM_SLOTS (PF CONFIGURE_MEM_SLOTS). */
  async getMaxMemSlots(): Promise<bigint> {
    return (await this.call("GET_MAX_MEM_SLOTS", undefined)).value;
  }

  /** SET_BACKEND_REQ_FD with `fd` (borrowed; the caller closes its copy afterwards, docs/protocol.md#back-end-channel). */
  setBackendReqFd(fd: number): Promise<void> {
    return this.ack("SET_BACKEND_REQ_FD", undefined, [fd]);
  }

  /**
   * GET_CONFIG of `size` bytes at `offset` (docs/protocol.md#device-config-space). The request carries `size` zero
   * bytes; the reply must have the same size.
   * @param options.shortIsRefusal - a reply with fewer config bytes than asked (rust-vmm back-ends
   *   answer a read past the end of their config with none) is a refusal too, as when sizes are probed.
   * @returns a copy of the config bytes, or `undefined` when the back-end refused (a zero-size reply,
   *   or with `shortIsRefusal` a short one).
   * @throws FrontendError `PROTOCOL` (reply of another size or offset), `DISCONNECTED`, `TIMEOUT`.
   */
  getConfig(offset: number, size: number, options: { readonly shortIsRefusal?: boolean } = {}): Promise<Uint8Array | undefined> {
    return this.#serial(async () => {
      const name = "GET_CONFIG";
      const payload = this.#encode(name, { offset, flags: 0, data: new Uint8Array(size) });
      let reply: ReceivedMessage | undefined;
      try {
        this.#traceSend(FrontendRequest.GET_CONFIG, HeaderFlag.VERSION, payload.byteLength, 0);
        reply = await this.#ch.request(FrontendRequest.GET_CONFIG, payload, { expectReply: true });
      } catch (err) {
        throw asFrontendError(err, name);
      }
      if (reply === undefined) throw new FrontendError("PROTOCOL", "get_config: no reply", { request: name });
      callHook(this.#trace, { channel: "frontend", direction: "recv", name, flags: reply.flags, size: reply.payload.byteLength, fds: reply.fds.length });
      if (reply.payload.byteLength === 0 && reply.fds.length === 0) return undefined;
      const { value } = this.#decode(name, reply);
      if (options.shortIsRefusal === true && value.offset === offset && value.data.byteLength < size) return undefined;
      if (value.data.byteLength !== size || value.offset !== offset) {
        throw new FrontendError(
          "PROTOCOL",
          `get_config: asked 0x${size.toString(16)} bytes at 0x${offset.toString(16)}, got 0x${value.data.byteLength.toString(16)} at 0x${value.offset.toString(16)}`,
          {
            request: name,
            expected: size,
            actual: value.data.byteLength,
          },
        );
      }
      return value.data.slice();
    });
  }

  /** GET_SHMEM_CONFIG (or the dialect's equivalent): raw reply value, validated by the caller. */
  async getShmemConfigRaw(): Promise<FrontendReplyValue<"GET_SHMEM_CONFIG"> | FrontendReplyValue<"GET_SHARED_MEMORY_REGIONS">> {
    if (this.dialect.layout === "crosvm") return (await this.call("GET_SHARED_MEMORY_REGIONS", undefined)).value;
    return (await this.call("GET_SHMEM_CONFIG", undefined)).value;
  }

  /** SET_MEM_TABLE with one fd per region (borrowed), in the same order. */
  setMemTable(regions: readonly MemoryRegion[], fds: readonly number[]): Promise<void> {
    return this.ack("SET_MEM_TABLE", { regions }, fds);
  }

  /** ADD_MEM_REG with exactly one fd (borrowed). */
  addMemReg(region: MemoryRegion, fd: number): Promise<void> {
    return this.ack("ADD_MEM_REG", region, [fd]);
  }

  /** REM_MEM_REG (no fd; matched on gpa + uaddr + size). */
  remMemReg(region: MemoryRegion): Promise<void> {
    return this.ack("REM_MEM_REG", region);
  }

  /** SET_VRING_NUM: queue `index` has `num` descriptors. */
  setVringNum(index: number, num: number): Promise<void> {
    return this.ack("SET_VRING_NUM", { index, num });
  }

  /**
   * SET_VRING_BASE: where the ring starts. Split ring: the next avail index in bits 0–15. Packed
   * ring: the avail offset and wrap counter in bits 0–15, the used offset and wrap counter in bits
   * 16–31 (`FRESH_PACKED_VRING_BASE` for a ring that never ran; docs/protocol.md#vring-set-up-messages).
   */
  setVringBase(index: number, num: number): Promise<void> {
    return this.ack("SET_VRING_BASE", { index, num });
  }

  /** SET_VRING_ADDR: ring addresses in the front-end's (synthetic) user address space. */
  setVringAddr(addr: VringAddr): Promise<void> {
    return this.ack("SET_VRING_ADDR", addr);
  }

  /** SET_VRING_KICK / CALL / ERR with an eventfd (borrowed) or none (polling, bit 8). */
  setVringFd(name: "SET_VRING_KICK" | "SET_VRING_CALL" | "SET_VRING_ERR", index: number, fd: number | undefined): Promise<void> {
    return this.ack(name, { index, noFd: fd === undefined }, fd === undefined ? [] : [fd]);
  }

  /** SET_VRING_ENABLE (num 1 = enable, 0 = disable). */
  setVringEnable(index: number, enable: boolean): Promise<void> {
    return this.ack("SET_VRING_ENABLE", { index, num: enable ? 1 : 0 });
  }

  /**
   * GET_VRING_BASE: stops the ring and returns where it stopped, the `num` a later SET_VRING_BASE
   * resumes from: the next avail index (split ring, u16), or both positions with their wrap
   * counters (packed ring, u32).
   */
  async getVringBase(index: number): Promise<number> {
    const { value } = await this.call("GET_VRING_BASE", { index, num: 0 });
    if (value.index !== index)
      throw new FrontendError("PROTOCOL", `get_vring_base: reply for vring ${value.index}, asked ${index}`, {
        request: "GET_VRING_BASE",
        expected: index,
        actual: value.index,
      });
    return value.num;
  }

  /**
   * GET_INFLIGHT_FD (PF INFLIGHT_SHMFD): asks the back-end for an inflight area for `numQueues`
   * queues of `queueSize` descriptors (docs/protocol.md#inflight-tracking-and-reconnect).
   * @returns the area's description and its fd (owned by the caller), or no fd when the back-end
   *   answered "no area" (`mmap_size` 0).
   * @throws FrontendError `PROTOCOL`, `DISCONNECTED`, `TIMEOUT`.
   */
  async getInflightFd(numQueues: number, queueSize: number): Promise<{ readonly info: InflightInfo; readonly fd: OwnedFd | undefined }> {
    const { value, fds } = await this.call("GET_INFLIGHT_FD", { mmapSize: 0n, mmapOffset: 0n, numQueues, queueSize });
    return { info: value, fd: fds[0] };
  }

  /** SET_INFLIGHT_FD (PF INFLIGHT_SHMFD): hands the area `info` describes to the back-end, with its fd (borrowed). */
  setInflightFd(info: InflightInfo, fd: number): Promise<void> {
    return this.ack("SET_INFLIGHT_FD", info, [fd]);
  }

  /**
   * SET_DEVICE_STATE_FD (PF DEVICE_STATE, phase 0 "stopped"; docs/protocol.md#device-state-transfer):
   * hands the back-end its end of the state channel.
   * @param fd - the back-end's end (the write end to save, the read end to load), borrowed.
   * @returns the back-end's own channel end, which replaces ours (reply bit 8 clear; owned by the
   *   caller), or `undefined` (bit 8 set: use our pipe).
   * @throws FrontendError `REFUSED` (an error code in bits 0–7), `PROTOCOL` (an error with an fd),
   *   `DISCONNECTED`, `TIMEOUT`.
   */
  async setDeviceStateFd(direction: "save" | "load", fd: number): Promise<OwnedFd | undefined> {
    const { value, fds } = await this.call(
      "SET_DEVICE_STATE_FD",
      { direction: direction === "save" ? DeviceStateDirection.SAVE : DeviceStateDirection.LOAD, phase: 0 },
      [fd],
    );
    if (value.error !== 0) {
      for (const f of fds) f.close();
      throw new FrontendError(
        fds.length > 0 ? "PROTOCOL" : "REFUSED",
        `set_device_state_fd: back-end answered error ${value.error}${fds.length > 0 ? " with an fd" : ""} (${direction})`,
        { request: "SET_DEVICE_STATE_FD", actual: value.error },
      );
    }
    return fds[0];
  }

  /**
   * CHECK_DEVICE_STATE (PF DEVICE_STATE): did the back-end save or load the state it was sent completely?
   * @throws FrontendError `REFUSED` (a non-zero answer), `PROTOCOL`, `DISCONNECTED`, `TIMEOUT`.
   */
  async checkDeviceState(): Promise<void> {
    const { value } = await this.call("CHECK_DEVICE_STATE", undefined);
    if (value !== 0n)
      throw new FrontendError("REFUSED", `check_device_state: back-end answered 0x${value.toString(16)}: the state transfer failed`, {
        request: "CHECK_DEVICE_STATE",
        actual: value,
      });
  }

  /** RESET_DEVICE (PF RESET_DEVICE only). */
  resetDevice(): Promise<void> {
    return this.ack("RESET_DEVICE", undefined);
  }

  /** RESET_OWNER: the reset of back-ends without RESET_DEVICE (QEMU falls back to it too). */
  resetOwner(): Promise<void> {
    return this.ack("RESET_OWNER", undefined);
  }

  /** Resolves once the back-end hung up the socket (EOF or reset), seen without a request outstanding too. */
  hangup(): Promise<void> {
    return this.#ep.hangup();
  }

  /** Closes the socket. Idempotent. */
  close(): void {
    this.#ep.close();
  }
}
