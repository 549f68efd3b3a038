/**
 * The handling side of back-end requests (docs/architecture.md#protocol-roles): serves the
 * back-end channel set up with SET_BACKEND_REQ_FD (docs/protocol.md#back-end-requests,
 * docs/protocol.md#back-end-channel; docs/shmem.md#map-and-unmap-requests,
 * docs/shmem.md#mapping-rules, docs/shmem.md#security-rules).
 * @module
 */
import {
  BackendRequest,
  HEADER_SIZE,
  MEM_RW_HEADER_SIZE,
  decodeMessage,
  encodeMemAccessHead,
  encodeReply,
  HeaderFlag,
  requestName,
  tryMessageSpec,
  type Dialect,
  type DecodedBackendRequest,
} from "@vhostkit/wire";
import { callHook, copyMessage, Errno, sendAck, sendReply, type BorrowedMessage, type Endpoint, type OwnedFd, type ReceivedMessage } from "@vhostkit/transport";
import { guestAddress, isRegionError, SHMEM_MAP_FLAG_RW, translateRange, type GuestMemory, type RegionErrorCode } from "@vhostkit/regions";
import { asFrontendError, FrontendError } from "./errors.js";
import type { SharedMemoryPort, ShmemMapRequest } from "./shared-memory-port.js";
import { InBufferServer } from "./mem-rw-buffer.js";
import type { TraceSink } from "./trace.js";

/** What happened to one back-end request (for tests, logs and the conformance report). */
export interface BackendRequestOutcome {
  /** Spec name of the request, or `UNKNOWN(0x..)`. */
  readonly name: string;
  /** True when the request was carried out. */
  readonly ok: boolean;
  /** The u64 status sent back, or `undefined` when no reply was due. */
  readonly replied: bigint | undefined;
  /** Why the request was refused (lowercase, names the values involved). */
  readonly reason?: string;
}

/** Options of a {@link BackendRequestHandler}. */
export interface BackendRequestHandlerOptions {
  /** SHMEM dialect of the connection (decides ids, layouts and whether replies are mandatory). */
  readonly dialect: Dialect;
  /** REPLY_ACK negotiated: a request with NEED_REPLY gets a u64 status. */
  readonly replyAck: boolean;
  /** BACKEND_SEND_FD negotiated: the back-end may attach fds. */
  readonly backendSendFd: boolean;
  /**
   * Guest memory as this back-end reaches it: SHMEM_MAP / SHMEM_UNMAP on the device's regions,
   * vhostkit MEM_READ / MEM_WRITE (when its `memory` is given, i.e. negotiated), and the signal
   * that a request's reply went out. Borrowed. Without it all four are refused.
   */
  readonly sharedMemory?: SharedMemoryPort;
  /** Called after a BACKEND_CONFIG_CHANGE_MSG was acknowledged (re-read the config). */
  readonly onConfigChange?: () => void;
  /** Called with every outcome. Must not throw. */
  readonly onOutcome?: (outcome: BackendRequestOutcome) => void;
  /** Called once when the channel ends (peer closed it, or a fatal framing error). */
  readonly onClose?: (err: FrontendError) => void;
  /** Receives every message on the back-end channel. */
  readonly trace?: TraceSink;
  /**
   * Revision 2 of MEM_READ / MEM_WRITE negotiated (docs/shmem.md#shared-data-buffer-revision-2): a request
   * whose head has the in-buffer flag moves its data through a buffer this handler creates.
   */
  readonly memRwBuffer?: boolean;
}

/** MEM_WRITE's success reply: u64 status 0. */
const STATUS_OK = new Uint8Array(8);

/**
 * `[gpa, gpa + size)` as views of guest memory, or `undefined` when some part does not translate
 * or, for a write, is read-only (the checked path then reports why).
 */
function spansOf(memory: GuestMemory, gpa: bigint, size: number, write: boolean): Uint8Array[] | undefined {
  try {
    return translateRange(memory, guestAddress(gpa), size, write).map((s) => s.bytes);
  } catch {
    return undefined;
  }
}

/** The errno a region error is refused with; every other failure is EINVAL. */
const REGION_ERRNO: Partial<Record<RegionErrorCode, number>> = {
  NOT_FOUND: Errno.ENOENT,
  BAD_FD: Errno.EBADF,
  UNSEALED: Errno.EPERM,
  TOO_MANY: Errno.ENOMEM,
  OUT_OF_BOUNDS: Errno.EFAULT,
  OVERLAP: Errno.EEXIST,
  UNKNOWN_SHMID: Errno.ENODEV,
};

/** A request refused on purpose, with the errno its reply carries. */
class Refusal extends Error {
  /** The positive errno sent as the reply's u64 status (receivers only test for non-zero). */
  readonly status: bigint;
  constructor(errno: number, message: string) {
    super(message);
    this.status = BigInt(errno);
  }
}

/** The u64 status a failed request is answered with: a refusal's errno, a region error's, or EINVAL. */
function failureStatus(err: unknown): bigint {
  if (err instanceof Refusal) return err.status;
  return BigInt(isRegionError(err) ? (REGION_ERRNO[err.code] ?? Errno.EINVAL) : Errno.EINVAL);
}

/**
 * Serves one back-end channel: reads each back-end request, carries it out, and replies exactly
 * as the protocol says — a u64 status only when REPLY_ACK was negotiated **and** NEED_REPLY is set
 * (docs/protocol.md#reply-rules), or always where the dialect makes it mandatory (crosvm-legacy SHMEM map and
 * unmap) or the request is always-replied (SHARED_OBJECT_LOOKUP). 0 = success, non-zero = refused.
 *
 * - SHMEM_MAP / SHMEM_UNMAP go to the {@link SharedMemoryPort}: a new mapping is first admitted
 *   (every other back-end of the guest can reach it), then mapped into the device's regions with
 *   every check (shmid, bounds, wrap-around, zero length, alignment, flags, overlap, exact-match
 *   unmap, caps, file size). Exactly one fd with MAP (and BACKEND_SEND_FD negotiated), none with
 *   UNMAP. The reply is sent after the local mapping is done, and the port hears of it
 *   (`requestHandled`) before any memory-table propagation goes out (reply first, docs/shmem.md#reply-first-ordering).
 * - CONFIG_CHANGE_MSG is acknowledged, then `onConfigChange` runs.
 * - MEM_READ / MEM_WRITE (vhostkit extension, only when the port has `memory`, i.e. negotiated) are
 *   served from the whole guest-physical space and always replied.
 * - VRING_HOST_NOTIFIER_MSG, IOTLB, VRING_CALL/ERR, shared objects, MEM_READ/MEM_WRITE when not
 *   negotiated, and unknown ids are refused.
 * - Malformed frames (bad sizes, reserved flag bits, REPLY set on a request) are refused with a
 *   failure reply when one was asked for; they never end the channel. Only a framing error the
 *   stream cannot recover from (EOF, oversize, truncated control data) does.
 *
 * Fd ownership: every fd received is closed exactly once — passed to the shared memory (which
 * then owns it) or closed here after handling. Nothing here throws into the caller: handler errors
 * become failure replies.
 */
export class BackendRequestHandler {
  readonly #ep: Endpoint;
  readonly #options: BackendRequestHandlerOptions;
  #closed = false;
  /** Scratch head of in-place MEM_READ replies (one reply is built at a time). */
  readonly #replyHead = new Uint8Array(MEM_RW_HEADER_SIZE);
  /** Revision 2 requests, when negotiated. */
  readonly #inBuffer: InBufferServer | undefined;
  #done: Promise<void> | undefined;

  /**
   * @param endpoint - this front-end's end of the back-end channel; ownership is taken.
   * @param options - negotiated modes and hooks.
   */
  constructor(endpoint: Endpoint, options: BackendRequestHandlerOptions) {
    this.#ep = endpoint;
    this.#options = options;
    this.#inBuffer = options.memRwBuffer === true ? new InBufferServer() : undefined;
  }

  /** Starts serving (idempotent). The returned promise settles when the channel ends; it never rejects. */
  start(): Promise<void> {
    this.#done ??= this.#loop();
    return this.#done;
  }

  async #loop(): Promise<void> {
    for (;;) {
      let msg: ReceivedMessage | { readonly sent: Promise<void> };
      try {
        // MEM_READ/MEM_WRITE that translate completely are served in place, from the socket buffer
        // (one copy each way); everything else is kept and handled below.
        msg = await this.#ep.recvWith((m) => this.#memAccessInPlace(m) ?? copyMessage(m));
      } catch (err) {
        if (!this.#closed) {
          this.#closed = true;
          this.#ep.close();
          this.#inBuffer?.dispose();
          const e = asFrontendError(err, "BACKEND_CHANNEL");
          callHook(
            this.#options.onClose,
            new FrontendError("DISCONNECTED", `back-end channel ended: ${e.message}`, { request: "BACKEND_CHANNEL" }, { cause: err }),
          );
        }
        return;
      }
      if ("sent" in msg) {
        await msg.sent;
        continue;
      }
      this.#traceRecv(msg);
      await this.#handle(msg);
    }
  }

  #traceRecv(msg: ReceivedMessage): void {
    callHook(this.#options.trace, {
      channel: "backend",
      direction: "recv",
      name: requestName("backend", msg.request),
      flags: msg.flags,
      size: msg.payload.byteLength,
      fds: msg.fds.length,
    });
  }

  /**
   * The fast path of MEM_READ / MEM_WRITE, run synchronously on the lent message: a well-formed
   * request without fds whose whole range translates (and is writable, for a write) is carried out
   * here — a read replies with views of guest memory as payload parts, a write copies the request's
   * data straight into guest memory — and the reply's send is returned (wrapped, so that
   * `recvWith` does not await it). Anything else returns
   * `undefined` and the message takes the checked path of {@link BackendRequestHandler.#memAccess}, which
   * reports exactly why it fails. No await between translation and copy: a mapping cannot change
   * in between.
   */
  #memAccessInPlace(m: BorrowedMessage): { readonly sent: Promise<void> } | undefined {
    const memory = this.#options.sharedMemory?.memory;
    const read = m.request === BackendRequest.BACKEND_MEM_READ;
    if (memory === undefined || (!read && m.request !== BackendRequest.BACKEND_MEM_WRITE)) return undefined;
    // Revision 2: a 16-byte head whose flags word says the data is in the shared buffer.
    if (
      this.#inBuffer !== undefined &&
      m.payload.byteLength === MEM_RW_HEADER_SIZE &&
      new DataView(m.payload.buffer, m.payload.byteOffset + 12, 4).getUint32(0) !== 0
    )
      return this.#memAccessInBuffer(m, memory, read);
    if (m.fds.length !== 0) return undefined;
    let req: DecodedBackendRequest;
    try {
      req = decodeMessage("backend", m.frame, this.#options.dialect, { maxPayload: m.payload.byteLength });
    } catch {
      return undefined;
    }
    let reply: Uint8Array | Uint8Array[];
    if (req.name === "BACKEND_MEM_READ") {
      const spans = spansOf(memory, req.value.guestAddress, req.value.size, false);
      if (spans === undefined) return undefined;
      // The scratch head is copied into the socket buffer before sendReply first awaits.
      reply = [encodeMemAccessHead(req.name, req.value.guestAddress, req.value.size, this.#replyHead), ...spans];
    } else if (req.name === "BACKEND_MEM_WRITE") {
      const { data } = req.value;
      const spans = spansOf(memory, req.value.guestAddress, data.byteLength, true);
      if (spans === undefined) return undefined;
      let at = 0;
      for (const s of spans) {
        s.set(data.subarray(at, at + s.byteLength));
        at += s.byteLength;
      }
      reply = STATUS_OK;
    } else return undefined;
    const name = req.name;
    if (this.#options.trace !== undefined) {
      this.#traceRecv(m);
      const size = Array.isArray(reply) ? reply.reduce((n, p) => n + p.byteLength, 0) : reply.byteLength;
      callHook(this.#options.trace, { channel: "backend", direction: "send", name, flags: HeaderFlag.VERSION | HeaderFlag.REPLY, size, fds: 0 });
    }
    // sendReply copies the parts into the socket buffer before it first awaits.
    const sent = sendReply(this.#ep, m.request, reply).catch(() => undefined); // a dead channel surfaces on the next recv
    this.#outcome({ name, ok: true, replied: 0n });
    return { sent: sent.then(() => this.#options.sharedMemory?.requestHandled()) };
  }

  /** A revision 2 request, served synchronously from the shared buffer (every outcome, failures included). */
  #memAccessInBuffer(m: BorrowedMessage, memory: GuestMemory, read: boolean): { readonly sent: Promise<void> } {
    const name = read ? "BACKEND_MEM_READ" : "BACKEND_MEM_WRITE";
    const r = (this.#inBuffer as InBufferServer).serve(memory, read, m.payload, m.fds.length, failureStatus);
    for (const f of m.fds) f.close();
    if (this.#options.trace !== undefined) {
      this.#traceRecv(m);
      const flags = HeaderFlag.VERSION | HeaderFlag.REPLY;
      callHook(this.#options.trace, { channel: "backend", direction: "send", name, flags, size: r.payload.byteLength, fds: r.fds.length });
    }
    // sendReply copies the payload and passes the fds before it first awaits (the buffer keeps its fd).
    const sent = sendReply(this.#ep, m.request, r.payload, r.fds).catch(() => undefined);
    this.#outcome({ name, ok: r.status === 0n, replied: r.status, ...(r.reason === undefined ? {} : { reason: r.reason }) });
    return { sent: sent.then(() => this.#options.sharedMemory?.requestHandled()) };
  }

  async #handle(msg: ReceivedMessage): Promise<void> {
    const fds = [...msg.fds];
    const name = requestName("backend", msg.request);
    const spec = tryMessageSpec("backend", msg.request, this.#options.dialect);
    const memRw = msg.request === BackendRequest.BACKEND_MEM_READ || msg.request === BackendRequest.BACKEND_MEM_WRITE;
    const memory = this.#options.sharedMemory?.memory;
    if (memRw && memory !== undefined) {
      await this.#memAccess(msg, name, memory);
      this.#options.sharedMemory?.requestHandled();
      return;
    }
    const known = spec !== undefined && !memRw;
    const asked = (msg.flags & HeaderFlag.NEED_REPLY) !== 0 && this.#options.replyAck;
    const mustReply = asked || (known && spec.replyRule === "always");
    let status = 0n;
    let reason: string | undefined;
    let after: (() => void) | undefined;
    try {
      if (!known) throw new Refusal(Errno.EINVAL, `${name.toLowerCase()}: not supported by this front-end`);
      let req: DecodedBackendRequest;
      try {
        req = decodeMessage("backend", msg.frame, this.#options.dialect);
      } catch (err) {
        throw new Refusal(Errno.EINVAL, err instanceof Error ? err.message : String(err));
      }
      after = this.#dispatch(req, fds);
    } catch (err) {
      status = failureStatus(err);
      reason = err instanceof Error ? err.message : String(err);
    } finally {
      for (const f of fds) f.close();
    }
    let replied: bigint | undefined;
    if (mustReply) {
      try {
        callHook(this.#options.trace, { channel: "backend", direction: "send", name, flags: HeaderFlag.VERSION | HeaderFlag.REPLY, size: 8, fds: 0 });
        await sendAck(this.#ep, msg.request, status);
        replied = status;
      } catch {
        // A dead channel surfaces on the next recv.
      }
    }
    this.#outcome({ name, ok: status === 0n, replied, ...(reason === undefined ? {} : { reason }) });
    // Reply first, then the follow-up work (config re-read) that may talk to the back-end.
    if (status === 0n) callHook(after);
    callHook(() => this.#options.sharedMemory?.requestHandled());
  }

  #outcome(o: BackendRequestOutcome): void {
    callHook(this.#options.onOutcome, o);
  }

  /** Carries out a decoded request; takes what it keeps out of `fds`. Returns follow-up work. */
  #dispatch(req: DecodedBackendRequest, fds: OwnedFd[]): (() => void) | undefined {
    const label = req.name.toLowerCase(); // how refusal reasons name the request
    switch (req.name) {
      case "BACKEND_SHMEM_MAP": {
        const v = req.value;
        this.#shmemMap(label, { shmid: v.shmid, shmOffset: v.shmOffset, len: v.len, fdOffset: v.fdOffset, flags: v.flags }, fds);
        return undefined;
      }
      case "CROSVM_SHMEM_MAP": {
        const v = req.value;
        if ((v.flags & 0x1) === 0) throw new Refusal(Errno.EINVAL, `${label}: mapping without MAP_R (flags 0x${v.flags.toString(16)})`);
        this.#shmemMap(
          label,
          { shmid: v.shmid, shmOffset: v.shmOffset, len: v.len, fdOffset: v.fdOffset, flags: (v.flags & 0x2) !== 0 ? SHMEM_MAP_FLAG_RW : 0n },
          fds,
        );
        return undefined;
      }
      case "BACKEND_SHMEM_UNMAP":
      case "CROSVM_SHMEM_UNMAP": {
        const v = req.value;
        this.#noFds(label, fds);
        this.#port(label).unmap({ shmid: v.shmid, shmOffset: v.shmOffset, len: v.len });
        return undefined;
      }
      case "BACKEND_CONFIG_CHANGE_MSG":
        this.#noFds(label, fds);
        return this.#options.onConfigChange;
      case "BACKEND_VRING_HOST_NOTIFIER_MSG":
        throw new Refusal(Errno.EINVAL, `${label}: host notifiers are not supported (no VM to map them into)`);
      case "BACKEND_IOTLB_MSG":
      case "BACKEND_VRING_CALL":
      case "BACKEND_VRING_ERR":
      case "BACKEND_SHARED_OBJECT_ADD":
      case "BACKEND_SHARED_OBJECT_REMOVE":
      case "BACKEND_SHARED_OBJECT_LOOKUP":
      case "BACKEND_MEM_READ":
      case "BACKEND_MEM_WRITE":
        throw new Refusal(Errno.EINVAL, `${label}: not supported by this front-end`);
      default: {
        const unreachable: never = req;
        throw new Refusal(Errno.EINVAL, `unhandled request ${String((unreachable as { name: string }).name)}`);
      }
    }
  }

  /**
   * vhostkit MEM_READ / MEM_WRITE (docs/shmem.md#extension-replies): always replied, whatever REPLY_ACK says. The
   * whole range is checked before any byte moves (all or nothing); a malformed request (size 0 or
   * > 64 KiB, non-zero padding, a size field that does not match, attached fds) gets the failure
   * reply. MEM_READ failure = the 16-byte header echoed with size 0; MEM_WRITE = a non-zero status.
   */
  async #memAccess(msg: ReceivedMessage, name: string, memory: GuestMemory): Promise<void> {
    const read = msg.request === BackendRequest.BACKEND_MEM_READ;
    const raw = msg.payload;
    const gpa = raw.byteLength >= 8 ? new DataView(raw.buffer, raw.byteOffset, 8).getBigUint64(0, true) : 0n;
    let reason: string | undefined;
    let data: Uint8Array | undefined;
    let status = 0n;
    try {
      if (msg.fds.length !== 0) throw new Refusal(Errno.EINVAL, `${name.toLowerCase()}: ${msg.fds.length} fds attached, expected none`);
      let req: DecodedBackendRequest;
      try {
        req = decodeMessage("backend", msg.frame, this.#options.dialect, { maxPayload: raw.byteLength });
      } catch (err) {
        throw new Refusal(Errno.EINVAL, err instanceof Error ? err.message : String(err));
      }
      if (req.name === "BACKEND_MEM_READ") {
        // The reply payload is built in place: 16-byte header echo, then the data read straight into it.
        const payload = new Uint8Array(MEM_RW_HEADER_SIZE + req.value.size);
        encodeMemAccessHead(req.name, req.value.guestAddress, req.value.size, payload.subarray(0, MEM_RW_HEADER_SIZE));
        await memory.read(guestAddress(req.value.guestAddress), payload.subarray(MEM_RW_HEADER_SIZE));
        data = payload;
      } else if (req.name === "BACKEND_MEM_WRITE") {
        await memory.write(guestAddress(req.value.guestAddress), req.value.data);
      }
    } catch (err) {
      status = failureStatus(err);
      reason = err instanceof Error ? err.message : String(err);
      data = undefined;
    } finally {
      for (const f of msg.fds) f.close();
    }
    try {
      const payload =
        read && data !== undefined
          ? data
          : (read
              ? encodeReply("backend", "BACKEND_MEM_READ", { guestAddress: gpa, data: new Uint8Array(0) }, this.#options.dialect)
              : encodeReply("backend", "BACKEND_MEM_WRITE", status, this.#options.dialect)
            ).subarray(HEADER_SIZE);
      callHook(this.#options.trace, {
        channel: "backend",
        direction: "send",
        name,
        flags: HeaderFlag.VERSION | HeaderFlag.REPLY,
        size: payload.byteLength,
        fds: 0,
      });
      await sendReply(this.#ep, msg.request, payload);
    } catch {
      // A dead channel surfaces on the next recv.
    }
    this.#outcome({ name, ok: status === 0n, replied: status, ...(reason === undefined ? {} : { reason }) });
  }

  #noFds(label: string, fds: readonly OwnedFd[]): void {
    if (fds.length !== 0) throw new Refusal(Errno.EINVAL, `${label}: ${fds.length} fds attached, expected none`);
  }

  #port(label: string): SharedMemoryPort {
    const port = this.#options.sharedMemory;
    if (port === undefined) throw new Refusal(Errno.ENODEV, `${label}: the device has no shared memory regions`);
    return port;
  }

  #shmemMap(label: string, mapping: Omit<ShmemMapRequest, "fd">, fds: OwnedFd[]): void {
    if (fds.length !== 1) throw new Refusal(fds.length === 0 ? Errno.EBADF : Errno.EINVAL, `${label}: ${fds.length} fds attached, expected exactly 1`);
    if (!this.#options.backendSendFd) throw new Refusal(Errno.EINVAL, `${label}: fd sent without BACKEND_SEND_FD negotiated`);
    const port = this.#port(label);
    const refusal = port.admit((mapping.flags & SHMEM_MAP_FLAG_RW) !== 0n);
    if (refusal !== undefined) throw new Refusal(Errno.ENOSPC, `${label}: ${refusal}`);
    // Ownership passes to the port (it closes the fd on refusal).
    port.map({ ...mapping, fd: fds.pop() as OwnedFd });
  }

  /** Stops serving and closes the channel (no `onClose` call). Idempotent. */
  close(): void {
    this.#closed = true;
    this.#ep.close();
    this.#inBuffer?.dispose();
  }
}
