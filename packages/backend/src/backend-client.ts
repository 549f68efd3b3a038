/**
 * Sends back-end requests on the back-end channel (SET_BACKEND_REQ_FD): the "back-end requests ×
 * sends" corner of the protocol-role grid (docs/architecture.md#protocol-roles).
 * @module
 */
import { type Endpoint, RequestChannel, type BorrowedMessage, type PayloadTail, type ReceivedMessage } from "@vhostkit/transport";
import {
  BackendRequest,
  CrosvmMapFlag,
  HEADER_SIZE,
  MEM_RW_FLAG_IN_BUFFER,
  MEM_RW_HEADER_SIZE,
  MEM_RW_MAX_DATA,
  MEM_RW_MAX_PAYLOAD,
  MMapFlag,
  UPSTREAM,
  decodeMemAccessHead,
  decodeReply,
  encodeMemAccessHead,
  encodeMessage,
  type BackendRequestName,
  type Dialect,
} from "@vhostkit/wire";
import { closeFd, describeErrno, dupCloexec, mmanErrno } from "@vhostkit/transport/sys";
import { BackendError } from "./errors.js";
import { type BackendDataBuffer, adoptFromReply, inBufferReadEcho } from "./mem-rw-buffer.js";

/** Arguments of {@link BackendClient.shmemMap}. */
export interface ShmemMapArgs {
  /** VIRTIO Shared Memory Region id (u8). */
  readonly shmid: number;
  /** Offset inside the region, bytes (page-aligned; the front-end checks). */
  readonly shmOffset: bigint;
  /** Mapping length, bytes, non-zero. */
  readonly len: bigint;
  /** Offset into the fd, bytes (default 0). */
  readonly fdOffset?: bigint;
  /** Map read-write (flags bit 0); read-only otherwise. */
  readonly writable: boolean;
}

/** Arguments of {@link BackendClient.shmemUnmap}: exactly one earlier mapping. */
export interface ShmemUnmapArgs {
  /** VIRTIO Shared Memory Region id. */
  readonly shmid: number;
  /** Offset of the mapping inside the region, bytes. */
  readonly shmOffset: bigint;
  /** Length of the mapping, bytes. */
  readonly len: bigint;
}

/** What was negotiated on the connection, as the client needs it. */
export interface BackendClientOptions {
  /** The connection's SHMEM dialect (default upstream). */
  readonly dialect?: Dialect;
  /** REPLY_ACK negotiated: SHMEM_MAP/UNMAP and CONFIG_CHANGE_MSG ask for an ack and wait for it. */
  readonly replyAck: boolean;
  /** SHMEM (the dialect's bit) negotiated. */
  readonly shmem: boolean;
  /** BACKEND_SEND_FD negotiated (needed to attach SHMEM_MAP's fd). */
  readonly sendFd: boolean;
  /** CONFIG negotiated (CONFIG_CHANGE_MSG). */
  readonly config: boolean;
  /** vhostkit MEM_READ/MEM_WRITE negotiated. */
  readonly memRw: boolean;
  /** Its revision 2, the shared data buffer, too (docs/shmem.md#shared-data-buffer-revision-2). */
  readonly memRwBuffer?: boolean;
  /** Whether the device is running now; SHMEM_MAP/UNMAP are refused otherwise. */
  readonly isRunning: () => boolean;
  /** Per-request timeout in milliseconds (default 5000). */
  readonly timeoutMs?: number;
}

/**
 * What a device can ask of the front-end over the back-end channel ({@link BackendClient} is the
 * real one; a connection without SET_BACKEND_REQ_FD gets one whose every call fails with
 * `NO_BACKEND_CHANNEL`).
 */
export interface BackendChannel {
  /** True when SHMEM was negotiated and maps can be sent (the device must also be running). */
  readonly canMap: boolean;
  /** SHMEM_MAP of `fd` (borrowed) into a shared memory region; see {@link BackendClient.shmemMap}. */
  shmemMap(args: ShmemMapArgs, fd: number): Promise<void>;
  /** SHMEM_UNMAP of one earlier mapping; see {@link BackendClient.shmemUnmap}. */
  shmemUnmap(args: ShmemUnmapArgs): Promise<void>;
  /** CONFIG_CHANGE_MSG; see {@link BackendClient.configChanged}. */
  configChanged(): Promise<void>;
  /** MEM_READ into a new buffer; see {@link BackendClient.memRead}. */
  memRead(gpa: bigint, size: number): Promise<Uint8Array>;
  /** MEM_READ into `dst`; see {@link BackendClient.memReadInto}. */
  memReadInto(gpa: bigint, dst: Uint8Array): Promise<void>;
  /** MEM_WRITE; see {@link BackendClient.memWrite}. */
  memWrite(gpa: bigint, data: Uint8Array): Promise<void>;
}

/**
 * The back-end's side of the back-end channel. Requests are serialised (the spec allows one
 * outstanding request per direction); concurrent calls queue. Never blocks the front-end socket:
 * the dispatcher keeps serving it while a request here waits for its reply (QEMU answers SHMEM_MAP,
 * then sends ADD_MEM_REG on the main socket).
 */
export class BackendClient implements BackendChannel {
  readonly #ep: Endpoint;
  readonly #ch: RequestChannel;
  readonly #options: BackendClientOptions;
  readonly #dialect: Dialect;
  #tail: Promise<unknown> = Promise.resolve();
  /** Calls started or waiting in {@link BackendClient.#serial}. */
  #queued = 0;
  /** Rejecters of the abandonable calls still waiting (see {@link BackendClient.abandon}). */
  readonly #abandonable = new Set<() => void>();
  /** The call {@link BackendClient.#serial} runs now (calls run one at a time). */
  #current: { sent: boolean } | undefined;
  readonly #head = new Uint8Array(MEM_RW_HEADER_SIZE);
  #closed = false;
  /** Revision 2: `ask` the front-end for its buffer with the next MEM_READ, use it (`ready`), or not (`off`). */
  #bufferState: "ask" | "ready" | "off";
  #buffer: BackendDataBuffer | undefined;

  /**
   * @param endpoint - the back-end channel socket; ownership is taken (closed by {@link close}).
   * @param options - what was negotiated.
   */
  constructor(endpoint: Endpoint, options: BackendClientOptions) {
    this.#ep = endpoint;
    this.#options = options;
    this.#dialect = options.dialect ?? UPSTREAM;
    this.#bufferState = options.memRwBuffer === true ? "ask" : "off";
    this.#ch = new RequestChannel(endpoint, { replyAck: options.replyAck, ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }) });
  }

  /** True when SHMEM was negotiated and maps can be sent (the device must also be running). */
  get canMap(): boolean {
    return this.#options.shmem && this.#options.sendFd;
  }

  /**
   * BACKEND_SHMEM_MAP: ask the front-end to map `len` bytes of `fd` (borrowed; the front-end gets
   * its own copy through SCM_RIGHTS) at `shmOffset` of region `shmid`. Resolves once the front-end
   * acknowledged (REPLY_ACK negotiated, or a crosvm-legacy connection), so the guest may use the
   * memory right after.
   * @throws BackendError `NOT_RUNNING`, `NOT_NEGOTIATED`, `REJECTED`, `DISCONNECTED`, `ABANDONED`; RangeError
   *   when `fd` cannot be duplicated (not open).
   */
  shmemMap(args: ShmemMapArgs, fd: number): Promise<void> {
    // The call's own copy, closed when its exchange ends: the caller may close `fd` as soon as the
    // returned promise settles, even when abandon() settled it while the send was still pending.
    const own = dupCloexec(fd);
    if (own < 0) return Promise.reject(new RangeError(`backend_shmem_map: fd ${fd} cannot be duplicated: ${describeErrno(mmanErrno())}`));
    return this.#serial(true, async () => {
      try {
        await this.#map(args, own);
      } finally {
        closeFd(own);
      }
    });
  }

  async #map(args: ShmemMapArgs, fd: number): Promise<void> {
    this.#checkShmem("BACKEND_SHMEM_MAP");
    if (!this.#options.sendFd)
      throw new BackendError("NOT_NEGOTIATED", "backend_shmem_map: BACKEND_SEND_FD not negotiated, cannot pass the fd", { request: "BACKEND_SHMEM_MAP" });
    const fdOffset = args.fdOffset ?? 0n;
    if (this.#dialect.layout === "crosvm") {
      const flags = CrosvmMapFlag.MAP_R | (args.writable ? CrosvmMapFlag.MAP_W : 0);
      await this.#always("CROSVM_SHMEM_MAP", { flags, shmid: args.shmid, shmOffset: args.shmOffset, fdOffset, len: args.len }, [fd]);
    } else {
      const value = { shmid: args.shmid, fdOffset, shmOffset: args.shmOffset, len: args.len, flags: args.writable ? MMapFlag.RW : 0n };
      await this.#acked("BACKEND_SHMEM_MAP", value, [fd]);
    }
  }

  /**
   * BACKEND_SHMEM_UNMAP of exactly one earlier mapping.
   * @throws BackendError `NOT_RUNNING`, `NOT_NEGOTIATED`, `REJECTED`, `DISCONNECTED`, `ABANDONED`.
   */
  shmemUnmap(args: ShmemUnmapArgs): Promise<void> {
    return this.#serial(true, async () => {
      this.#checkShmem("BACKEND_SHMEM_UNMAP");
      if (this.#dialect.layout === "crosvm") {
        await this.#always("CROSVM_SHMEM_UNMAP", { shmid: args.shmid, shmOffset: args.shmOffset, len: args.len }, []);
      } else {
        await this.#acked("BACKEND_SHMEM_UNMAP", { shmid: args.shmid, fdOffset: 0n, shmOffset: args.shmOffset, len: args.len, flags: 0n }, []);
      }
    });
  }

  /**
   * BACKEND_CONFIG_CHANGE_MSG: the front-end re-reads the config space (GET_CONFIG).
   * @throws BackendError `NOT_NEGOTIATED`, `REJECTED`, `DISCONNECTED`, `ABANDONED`, `NOT_RUNNING` (abandoned before it was sent).
   */
  configChanged(): Promise<void> {
    return this.#serial(true, async () => {
      if (!this.#options.config)
        throw new BackendError("NOT_NEGOTIATED", "backend_config_change_msg: CONFIG not negotiated", { request: "BACKEND_CONFIG_CHANGE_MSG" });
      await this.#acked("BACKEND_CONFIG_CHANGE_MSG", undefined, []);
    });
  }

  /**
   * vhostkit MEM_READ (docs/shmem.md#vhostkit-memory-access-extension): `size` bytes (1..65536) of guest-physical memory at `gpa`,
   * read by the front-end. Split larger reads yourself (or use `@vhostkit/fallback`).
   * @returns a new buffer owned by the caller.
   * @throws BackendError `NOT_NEGOTIATED`, `REJECTED` (the front-end could not read the range), `DISCONNECTED`.
   */
  async memRead(gpa: bigint, size: number): Promise<Uint8Array> {
    const dst = new Uint8Array(size);
    await this.memReadInto(gpa, dst);
    return dst;
  }

  /**
   * MEM_READ into `dst` (1..65536 bytes, borrowed): a reply of the expected length is received by the
   * kernel straight into `dst`, with no copy in between. When the front-end refuses (a reply without
   * data) `dst` is untouched; a malformed reply of the full length (wrong address, non-zero
   * padding) may already have written it before the `PROTOCOL` error.
   * @throws BackendError `NOT_NEGOTIATED`, `REJECTED` (the front-end could not read the range),
   *   `PROTOCOL` (malformed reply), `DISCONNECTED`.
   */
  async memReadInto(gpa: bigint, dst: Uint8Array): Promise<void> {
    // Revision 2: through the shared buffer; inline when the front-end handed over none.
    if (this.#bufferState !== "off" && (await this.#memReadInBuffer(gpa, dst))) return;
    const name = "BACKEND_MEM_READ";
    return this.#serial(false, () =>
      this.#memAccess(name, gpa, dst.byteLength, undefined, { bytes: dst, offset: MEM_RW_HEADER_SIZE }, (reply) => {
        if (!reply.tailed) {
          // Not 16 + size bytes: a refusal (no data), short data, or malformed.
          const value = this.#decodeReply(name, reply.frame);
          if (value instanceof BackendError) return value;
          return new BackendError("REJECTED", `backend_mem_read: front-end could not read 0x${dst.byteLength.toString(16)} bytes at 0x${gpa.toString(16)}`, {
            request: name,
            expected: dst.byteLength,
          });
        }
        // The data is already in dst; the head must echo the request.
        let echoed: { guestAddress: bigint; size: number };
        try {
          echoed = decodeMemAccessHead(name, reply.payload);
        } catch (err) {
          return this.#malformed(name, err);
        }
        if (echoed.guestAddress !== gpa || echoed.size !== dst.byteLength) {
          return new BackendError(
            "PROTOCOL",
            `backend_mem_read: malformed reply: echoes 0x${echoed.size.toString(16)} bytes at 0x${echoed.guestAddress.toString(16)}, asked 0x${dst.byteLength.toString(16)} at 0x${gpa.toString(16)}`,
            { request: name, expected: dst.byteLength, actual: echoed.size },
          );
        }
        return undefined;
      }),
    );
  }

  /**
   * An in-buffer MEM_READ (docs/shmem.md#shared-data-buffer-revision-2); the first takes the buffer from its reply.
   * @returns false when the front-end handed over no usable buffer (nothing was read: read inline).
   */
  #memReadInBuffer(gpa: bigint, dst: Uint8Array): Promise<boolean> {
    const name = "BACKEND_MEM_READ";
    const len = dst.byteLength;
    return this.#serial(false, () =>
      this.#memAccess(name, gpa, len, undefined, undefined, (reply) => {
        if (this.#bufferState === "ask") {
          this.#buffer = adoptFromReply(reply.fds);
          this.#bufferState = this.#buffer === undefined ? "off" : "ready";
          if (this.#buffer === undefined) return false;
        }
        const buffer = this.#buffer;
        if (buffer === undefined) return new BackendError("DISCONNECTED", "back-end channel closed", { request: name });
        if (reply.fds.length !== 0) return new BackendError("PROTOCOL", `backend_mem_read: malformed reply: ${reply.fds.length} fds`, { request: name });
        const echo = inBufferReadEcho(reply.payload, gpa, len);
        if (echo === "refused")
          return new BackendError("REJECTED", `backend_mem_read: front-end could not read 0x${len.toString(16)} bytes at 0x${gpa.toString(16)}`, {
            request: name,
          });
        if (echo !== "ok") return new BackendError("PROTOCOL", `backend_mem_read: malformed reply: ${echo}`, { request: name });
        dst.set(buffer.bytes.subarray(0, len));
        return true;
      }),
    );
  }

  /**
   * vhostkit MEM_WRITE (docs/shmem.md#vhostkit-memory-access-extension): write `data` (1..65536 bytes, borrowed) to guest-physical `gpa`.
   * The data is copied once, into the socket buffer (sent as a part after the 16-byte head).
   * @throws BackendError `NOT_NEGOTIATED`, `REJECTED` (nothing was written), `PROTOCOL` (malformed
   *   reply), `DISCONNECTED`.
   */
  memWrite(gpa: bigint, data: Uint8Array): Promise<void> {
    const name = "BACKEND_MEM_WRITE";
    return this.#serial(false, () => {
      // Revision 2 once the buffer is here: the data goes into it (this call's slot owns it), the message carries only the head.
      const buffer = this.#bufferState === "ready" ? this.#buffer : undefined;
      if (buffer !== undefined && data.byteLength <= buffer.bytes.byteLength) buffer.bytes.set(data);
      return this.#memAccess(name, gpa, data.byteLength, buffer === undefined ? data : undefined, undefined, (reply) => {
        const value = this.#decodeReply(name, reply.frame);
        if (value instanceof BackendError) return value;
        const status = (value as bigint | undefined) ?? 1n;
        if (status === 0n) return undefined;
        return new BackendError(
          "REJECTED",
          `backend_mem_write: front-end refused 0x${data.byteLength.toString(16)} bytes at 0x${gpa.toString(16)} (status ${status})`,
          { request: name, actual: status },
        );
      });
    });
  }

  /**
   * One MEM_READ/MEM_WRITE exchange: the 16-byte head (and `data`, as a second part) out; the reply
   * (its end received into `tail` when given and of that length) is lent to `check`, which returns
   * the result or the error to throw.
   */
  async #memAccess<T>(
    name: "BACKEND_MEM_READ" | "BACKEND_MEM_WRITE",
    gpa: bigint,
    size: number,
    data: Uint8Array | undefined,
    tail: PayloadTail | undefined,
    check: (reply: BorrowedMessage) => T | BackendError,
  ): Promise<T> {
    this.#checkMemRw(name, size);
    // One scratch head: requests are serial and send copies it before it first awaits. No data
    // part with MEM_WRITE, or a MEM_READ while the buffer is in use: the data is in the buffer.
    const inBuffer = (name === "BACKEND_MEM_WRITE" && data === undefined) || (name === "BACKEND_MEM_READ" && this.#bufferState !== "off");
    const head = encodeMemAccessHead(name, gpa, size, this.#head, inBuffer ? MEM_RW_FLAG_IN_BUFFER : 0);
    let out: T | BackendError;
    try {
      out = await this.#ch.requestWith(
        BackendRequest[name],
        data === undefined ? head : [head, data],
        (reply) => {
          // `check` may take an fd out of the list (the shared buffer); the rest are closed.
          try {
            return check(reply);
          } finally {
            for (const f of reply.fds) f.close();
          }
        },
        tail === undefined ? { needReply: true } : { needReply: true, tail },
      );
    } catch (err) {
      throw this.#wrap(name, err);
    }
    if (out instanceof BackendError) throw out;
    return out;
  }

  /** Close the channel; queued and later calls fail with `DISCONNECTED`. Idempotent. */
  close(): void {
    this.#closed = true;
    this.#ep.close();
    this.#bufferState = "off";
    this.#buffer?.dispose();
    this.#buffer = undefined;
  }

  #checkShmem(request: string): void {
    if (!this.#options.shmem)
      throw new BackendError("NOT_NEGOTIATED", `${request.toLowerCase()}: SHMEM (${this.#dialect.name} dialect) not negotiated`, { request });
    if (!this.#options.isRunning()) {
      throw new BackendError(
        "NOT_RUNNING",
        `${request.toLowerCase()}: the device is not running (before DRIVER_OK or after GET_VRING_BASE); a front-end may crash on it`,
        { request },
      );
    }
  }

  #checkMemRw(request: string, size: number): void {
    if (!this.#options.memRw) throw new BackendError("NOT_NEGOTIATED", `${request.toLowerCase()}: vhostkit MEM_RW not negotiated`, { request });
    // docs/shmem.md#extension-rules, rule 8: a suspended device sends nothing on the back-end channel.
    if (!this.#options.isRunning())
      throw new BackendError("NOT_RUNNING", `${request.toLowerCase()}: the device is not running (before DRIVER_OK or after GET_VRING_BASE)`, { request });
    if (!Number.isInteger(size) || size < 1 || size > MEM_RW_MAX_DATA)
      throw new RangeError(`${request.toLowerCase()}: size ${size} not in 1..${MEM_RW_MAX_DATA}`);
  }

  /**
   * Runs `f` after every earlier call (one outstanding request per direction). `abandonable` calls
   * (SHMEM_MAP/UNMAP, CONFIG_CHANGE_MSG: no caller buffer is written by their reply) reject at once
   * on {@link BackendClient.abandon} while their exchange finishes in the background.
   */
  #serial<T>(abandonable: boolean, f: () => Promise<T>): Promise<T> {
    const call = { sent: false };
    const start = (): Promise<T> => {
      this.#current = call;
      return this.#closed ? Promise.reject(new BackendError("DISCONNECTED", "back-end channel closed")) : f();
    };
    // Nothing queued: start at once, with no hop through the previous call's promise.
    const run = this.#queued++ === 0 ? start() : this.#tail.then(start);
    const done = (): void => void this.#queued--;
    this.#tail = run.then(done, done);
    if (!abandonable) return run;
    return new Promise<T>((resolve, reject) => {
      const abandon = (): void =>
        reject(
          call.sent
            ? new BackendError(
                "ABANDONED",
                "the device stopped while this back-end request waited for its reply; the front-end may still apply it (its reply will be dropped)",
              )
            : new BackendError("NOT_RUNNING", "the device stopped before this back-end request was sent"),
        );
      this.#abandonable.add(abandon);
      const settle = (): void => void this.#abandonable.delete(abandon);
      run.then(
        (v) => (settle(), resolve(v)),
        (e: unknown) => (settle(), reject(e)),
      );
    });
  }

  /** The running call's request is about to go out: from now on its outcome is the front-end's. */
  #markSent(): void {
    if (this.#current !== undefined) this.#current.sent = true;
  }

  /**
   * The device is stopping (GET_VRING_BASE, SET_STATUS 0, reset): SHMEM_MAP / SHMEM_UNMAP /
   * CONFIG_CHANGE_MSG calls still waiting reject now — `ABANDONED` when the request was already
   * sent (its outcome is unknown), `NOT_RUNNING` when it was still queued (never sent) — so a
   * handler blocked on one can finish and the stop can be answered. A front-end like QEMU reads the
   * back-end channel only after it has that answer; the replies that come then are read and
   * dropped in order, so the channel stays in step. Later calls are refused while the device is not
   * running, as always.
   */
  abandon(): void {
    const waiting = [...this.#abandonable];
    this.#abandonable.clear();
    for (const a of waiting) a();
  }

  #payload(name: BackendRequestName, value: unknown): Uint8Array {
    return encodeMessage("backend", name, 0x1, value as never, this.#dialect).subarray(HEADER_SIZE);
  }

  /** A request that has only an ack (REPLY_ACK rule): waits for it when REPLY_ACK is negotiated. */
  async #acked(name: BackendRequestName, value: unknown, fds: readonly number[]): Promise<void> {
    let status: bigint;
    try {
      const payload = this.#payload(name, value);
      this.#markSent();
      status = await this.#ch.requestAck(BackendRequest[name], payload, { fds });
    } catch (err) {
      throw this.#wrap(name, err);
    }
    if (status !== 0n) throw new BackendError("REJECTED", `${name.toLowerCase()}: front-end answered status ${status}`, { request: name, actual: status });
  }

  /** A request that is always answered with a u64 status (crosvm legacy). */
  async #always(name: BackendRequestName, value: unknown, fds: readonly number[]): Promise<void> {
    const reply = await this.#exchange(name, value, fds);
    const status = decodeReply("backend", reply.frame, this.#dialect).value as bigint;
    if (status !== 0n) throw new BackendError("REJECTED", `${name.toLowerCase()}: front-end answered status ${status}`, { request: name, actual: status });
  }

  async #exchange(name: BackendRequestName, value: unknown, fds: readonly number[]): Promise<ReceivedMessage> {
    let reply: ReceivedMessage | undefined;
    try {
      // crosvm's legacy requests are always answered, without NEED_REPLY.
      const payload = this.#payload(name, value);
      this.#markSent();
      reply = await this.#ch.request(BackendRequest[name], payload, { fds, expectReply: true });
    } catch (err) {
      throw this.#wrap(name, err);
    }
    if (reply === undefined) throw new BackendError("PROTOCOL", `${name.toLowerCase()}: no reply`, { request: name });
    for (const f of reply.fds) f.close();
    return reply;
  }

  /** A MEM_READ/MEM_WRITE reply decoded in place; a malformed one is a `PROTOCOL` error (the stream stays in sync). */
  #decodeReply(name: BackendRequestName, frame: Uint8Array): unknown {
    try {
      return decodeReply("backend", frame, this.#dialect, { maxPayload: MEM_RW_MAX_PAYLOAD }).value;
    } catch (err) {
      return this.#malformed(name, err);
    }
  }

  #malformed(name: BackendRequestName, err: unknown): BackendError {
    return new BackendError(
      "PROTOCOL",
      `${name.toLowerCase()}: malformed reply: ${err instanceof Error ? err.message : String(err)}`,
      { request: name },
      { cause: err },
    );
  }

  #wrap(name: string, err: unknown): BackendError {
    return new BackendError(
      "DISCONNECTED",
      `${name.toLowerCase()}: back-end channel failed: ${err instanceof Error ? err.message : String(err)}`,
      { request: name },
      { cause: err },
    );
  }
}
