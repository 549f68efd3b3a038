import type { OwnedFd } from "./owned-fd.js";
import { TransportError } from "./transport-error.js";
import { classifyErrno, Errno } from "./sys/errno.js";
import { describeErrno } from "./errno-text.js";
import { cmsgLen, cmsgSpace, CMSG_HDR, SCM_RIGHTS, SOL_SOCKET } from "./sys/cmsg.js";
import { CMSG, GATHER_MIN, IoBlock, MAX_IOV, setU64 } from "./io-block.js";
import { lastErrno } from "./sys/libc.js";
import { addressOf, MSG_DONTWAIT, MSG_NOSIGNAL, socketSys } from "./sys/socket.js";
import { HEADER_SIZE, MAX_FDS_PER_MSG, MAX_PAYLOAD_SIZE } from "@vhostkit/wire";
import { Reactor } from "./reactor.js";
import type { Watch } from "./watch.js";
import { FrameReader, NO_FDS, type PayloadTail } from "./frame-reader.js";
import { AGAIN } from "./recv-once.js";

export type { PayloadTail } from "./frame-reader.js";

/** One received message. The caller owns `fds` and must close or transfer each. */
export interface ReceivedMessage {
  /** Request code (u32). */
  readonly request: number;
  /** Header flags (u32). */
  readonly flags: number;
  /** Payload bytes (a copy owned by the caller, length = header size field); a view into `frame`. */
  readonly payload: Uint8Array;
  /** The whole frame as received: the 12-byte header then the payload (what `@vhostkit/wire` decodes). */
  readonly frame: Uint8Array;
  /**
   * fds that arrived with the header; owned by the caller. A message without fds shares one frozen
   * empty array (nothing allocated per message).
   */
  readonly fds: OwnedFd[];
}

/**
 * A received message lent to the callback of {@link Endpoint.recvWith}: `payload` and `frame` are
 * views into the endpoint's receive buffer, valid only until the callback returns (the next receive
 * overwrites them). Copy what you keep. The fds are owned as in {@link ReceivedMessage}.
 */
export interface BorrowedMessage extends ReceivedMessage {
  /**
   * The end of the payload went straight into the {@link PayloadTail} given to
   * {@link Endpoint.recvWith}: `payload` (and `frame`) then hold only the bytes before the tail,
   * while the header's size field still counts the whole payload.
   */
  readonly tailed: boolean;
}

/** Endpoint limits and policy. */
export interface EndpointOptions {
  /** Max fds per message (default 8, `MAX_FDS_PER_MSG`). More -> `TOO_MANY_FDS`. */
  readonly maxFds?: number;
  /**
   * Max payload bytes (default 4096, `MAX_PAYLOAD_SIZE`). A larger header `size` -> `OVERSIZE`
   * (latched: the stream cannot be resynchronised). Raise it to 65552 on a back-end channel that
   * negotiated vhostkit's MEM_READ/MEM_WRITE.
   */
  readonly maxPayload?: number;
  /**
   * How many fds request `request` (with header `flags`) may carry, e.g. from the wire message
   * table. A message with more is read completely, its fds are closed and `recv` rejects with
   * `FDS_NOT_ALLOWED` (kind `retry`: the stream stays in sync and the endpoint stays usable).
   * Default: any number up to `maxFds`.
   */
  readonly fdsAllowed?: (request: number, flags: number) => number;
  /** Reactor that waits for readiness (default {@link Reactor.shared}). */
  readonly reactor?: Reactor;
}
const EMPTY = new Uint8Array(0);
/** No fds to send (one shared array, not one per call). */
export const NO_FD_NUMBERS: readonly number[] = Object.freeze([]);

/**
 * Keep a message lent by {@link Endpoint.recvWith}: the copy {@link Endpoint.recv} makes (one buffer
 * for the frame, the payload a view of it; the fds move to the copy).
 */
export function copyMessage(m: BorrowedMessage): ReceivedMessage {
  const frame = m.frame.slice();
  // A kept message gets an array of its own even without fds (the lent one may be the shared frozen one).
  return { request: m.request, flags: m.flags, payload: frame.subarray(HEADER_SIZE), frame, fds: m.fds === NO_FDS ? [] : m.fds };
}

/**
 * A vhost-user message endpoint on a connected AF_UNIX stream socket.
 *
 * Never blocks the JS thread: `sendmsg`/`recvmsg` run with `MSG_DONTWAIT`; on EAGAIN the endpoint
 * waits for readiness through its {@link Reactor} (one edge-triggered epoll set served by one koffi
 * worker thread for all fds). Idle costs no CPU.
 *
 * Framing (docs/protocol.md#file-descriptors): fds are attached to the **first byte of the header** on send, and
 * a message goes out in one `sendmsg`. On receive one `recvmsg` (`MSG_CMSG_CLOEXEC`) reads as much
 * as the receive buffer holds: header and payload together, and frames queued behind them, which
 * later receives take from the buffer without a system call. Each read's fds go to the message they
 * came with; fds that arrive inside a payload are a protocol error (`FDS_ON_BODY`). How the fds are
 * matched and why no read that must find nothing is needed: `frame-reader.ts`.
 *
 * Takes ownership of the socket fd. One `recv` and one `send` may be outstanding at a time.
 */
export class Endpoint {
  readonly #sock: OwnedFd;
  readonly #watch: Watch;
  readonly #maxFds: number;
  readonly #maxPayload: number;
  readonly #fdsAllowed: ((request: number, flags: number) => number) | undefined;
  readonly #rx: FrameReader;
  readonly #tx: IoBlock;
  #closed = false;
  #lending = false;
  /** The parts of a payload given as one buffer (reused; emptied again before `send` first waits). */
  readonly #one: Uint8Array[] = [EMPTY];
  readonly #lent: { -readonly [K in keyof BorrowedMessage]: BorrowedMessage[K] } = {
    request: 0,
    flags: 0,
    payload: EMPTY,
    frame: EMPTY,
    fds: NO_FDS,
    tailed: false,
  };
  #latched: TransportError | undefined;
  /** The tail of the receive that waits, for {@link Endpoint.#probe}. */
  #probeTail: PayloadTail | undefined;
  /** The waiting receive's own read attempt, run by the reactor (see `Watch.readable`). */
  readonly #probe = (): boolean => this.#rx.probe(this.#probeTail);

  /**
   * @param sock - connected stream socket; ownership is taken (closed here if construction fails).
   * @param options - limits and policy.
   * @throws TransportError `SYSCALL` when the socket cannot be registered with the reactor (for
   *   example EPERM: a hostile peer passed a regular file instead of a socket).
   */
  constructor(sock: OwnedFd, options: EndpointOptions = {}) {
    this.#sock = sock;
    this.#maxFds = options.maxFds ?? MAX_FDS_PER_MSG;
    this.#maxPayload = options.maxPayload ?? MAX_PAYLOAD_SIZE;
    this.#fdsAllowed = options.fdsAllowed;
    try {
      this.#watch = (options.reactor ?? Reactor.shared()).watch(sock.fd, "endpoint");
    } catch (err) {
      sock.close();
      throw err;
    }
    this.#rx = new FrameReader(sock.fd, this.#watch, this.#maxFds, this.#maxPayload);
    this.#tx = new IoBlock(this.#maxFds, HEADER_SIZE + this.#maxPayload);
  }

  /** The error that ended this endpoint, if any (latched: every later call throws it). */
  get error(): TransportError | undefined {
    return this.#latched;
  }

  /** True once {@link Endpoint.close} ran. */
  get closed(): boolean {
    return this.#closed;
  }

  #fail(err: TransportError): TransportError {
    if (err.kind !== "retry") this.#latched ??= err;
    return err;
  }

  #check(): void {
    if (this.#latched) throw this.#latched;
    if (this.#closed) throw new TransportError("CLOSED", "broken", "endpoint closed");
  }

  /**
   * Send one message; the fds (borrowed, not closed) travel with the first byte of the header.
   * `payload` may be given in parts (for example a 16-byte header and a data view), sent as one
   * payload without joining them first. Parts of 4 KiB or more go to the kernel from their own
   * memory (one copy in all); shorter ones are copied into the send buffer first. Every part is
   * read before the returned promise first waits, so the caller may reuse or unmap it right after
   * the call returns (a part may be a view of guest memory).
   * Partial writes are continued; EINTR is retried; EAGAIN waits for writability.
   * @throws TransportError `OVERSIZE`, `TOO_MANY_FDS`, `SYSCALL` (kind `disconnected` on
   *   EPIPE/ECONNRESET; EFAULT if a part's memory is not readable), `CLOSED`.
   */
  async send(request: number, flags: number, payload: Uint8Array | readonly Uint8Array[] = EMPTY, fds: readonly number[] = NO_FD_NUMBERS): Promise<void> {
    this.#check();
    // A lone buffer goes in a reused one-element array: no allocation per message.
    const one = this.#one;
    let parts: readonly Uint8Array[];
    if (payload instanceof Uint8Array) {
      one[0] = payload;
      parts = one;
    } else parts = payload;
    let size = 0;
    for (const p of parts) size += p.length;
    if (size > this.#maxPayload) {
      throw new TransportError(
        "OVERSIZE",
        "retry",
        `request ${request}: payload 0x${size.toString(16)} exceeds max 0x${this.#maxPayload.toString(16)}`,
        undefined,
        { expected: this.#maxPayload, actual: size },
      );
    }
    if (fds.length > this.#maxFds) {
      throw new TransportError("TOO_MANY_FDS", "retry", `request ${request}: ${fds.length} fds exceed max ${this.#maxFds}`, undefined, {
        expected: this.#maxFds,
        actual: fds.length,
      });
    }
    const tx = this.#tx;
    const v = tx.block.view;
    const d = tx.dataOff;
    v.setUint32(d, request, true);
    v.setUint32(d + 4, flags, true);
    v.setUint32(d + 8, size, true);
    const total = HEADER_SIZE + size;
    let control = 0;
    if (fds.length > 0) {
      control = cmsgSpace(4 * fds.length);
      setU64(v, CMSG, cmsgLen(4 * fds.length));
      v.setInt32(CMSG + 8, SOL_SOCKET, true);
      v.setInt32(CMSG + 12, SCM_RIGHTS, true);
      for (let i = 0; i < fds.length; i++) v.setInt32(CMSG + CMSG_HDR + 4 * i, fds[i]!, true);
    }
    // Every part has its place in the send buffer; short ones are copied there now, long ones
    // (up to MAX_IOV - 1 of them) are gathered by the kernel from their own memory.
    const gathered = this.#prepareGathered(parts, control);
    const first = this.#sendOnce(request);
    let sent = first === AGAIN ? 0 : first;
    // Partial write or EAGAIN: copy what the gather skipped, synchronously, before the first await
    // (a part may be a view of guest memory that is gone by the time the socket drains).
    if (sent !== total && gathered !== 0) this.#copyGathered(parts, gathered);
    one[0] = EMPTY;
    if (sent === total) return;
    if (sent > 0) control = 0;
    while (sent < total) {
      tx.prepare(sent, total - sent, control);
      const n = this.#sendOnce(request);
      if (n === AGAIN) {
        await this.#watch.writable();
        this.#check();
        continue;
      }
      sent += n;
      control = 0;
    }
  }

  /**
   * Points the send iovecs at the header and short parts (copied into the send buffer) and at
   * long parts in their own memory, and the control buffer at `control` bytes.
   * @returns bit i set: part i was left in its own memory.
   */
  #prepareGathered(parts: readonly Uint8Array[], control: number): number {
    const tx = this.#tx;
    let at = HEADER_SIZE;
    let runStart = 0;
    let iov = 0;
    let gathered = 0;
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i]!;
      // Room for the run before it, the part, and a run after it.
      if (p.length >= GATHER_MIN && i < 31 && iov + (at > runStart ? 3 : 2) <= MAX_IOV) {
        if (at > runStart) tx.setIov(iov++, tx.dataAddr(runStart), at - runStart);
        // SAFETY: the address is used by the sendmsg that follows, in this synchronous stretch, while `p` is alive.
        tx.setIov(iov++, addressOf(p), p.length);
        gathered |= 1 << i;
        at += p.length;
        runStart = at;
      } else {
        tx.block.bytes.set(p, tx.dataOff + at);
        at += p.length;
      }
    }
    if (at > runStart) tx.setIov(iov++, tx.dataAddr(runStart), at - runStart);
    tx.control(control);
    tx.iovCount(iov);
    return gathered;
  }

  /** Copies the parts marked in `gathered` into their slots of the send buffer. */
  #copyGathered(parts: readonly Uint8Array[], gathered: number): void {
    let at = this.#tx.dataOff + HEADER_SIZE;
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i]!;
      if ((gathered & (1 << i)) !== 0) this.#tx.block.bytes.set(p, at);
      at += p.length;
    }
  }

  /**
   * One non-blocking sendmsg of what the send msghdr describes: bytes written, or {@link AGAIN}.
   * @throws TransportError `SYSCALL` on any other failure (latched).
   */
  #sendOnce(request: number): number {
    for (;;) {
      // SAFETY: msghdr, iovecs (into tx.block or into live parts) and control prepared just before.
      const n = Number(socketSys().sendmsg(this.#sock.fd, this.#tx.block.ptr, MSG_DONTWAIT | MSG_NOSIGNAL));
      if (n >= 0) return n;
      const e = lastErrno();
      if (e === Errno.EINTR) continue;
      if (e === Errno.EAGAIN) return AGAIN;
      throw this.#fail(new TransportError("SYSCALL", classifyErrno(e), `request ${request}: sendmsg: ${describeErrno(e)}`, { errno: e, syscall: "sendmsg" }));
    }
  }

  /**
   * Receive one message: the header with its fds, then exactly `size` payload bytes.
   * On any error every fd received for the message is closed; errors other than `FDS_NOT_ALLOWED`
   * are latched.
   * @returns the message; the caller owns its fds and must close or transfer each.
   * @throws TransportError `EOF` (kind `disconnected` between messages, `partial` mid-message),
   *   `OVERSIZE`, `TOO_MANY_FDS`, `CTRUNC`, `FDS_ON_BODY`, `FDS_NOT_ALLOWED`, `SYSCALL`, `CLOSED`.
   */
  async recv(): Promise<ReceivedMessage> {
    return this.recvWith(copyMessage);
  }

  /**
   * Receive one message as {@link Endpoint.recv} does, but lend it to `take` instead of copying it:
   * `take` runs synchronously with views into the receive buffer and returns what the caller keeps
   * (for example after copying the payload straight to its destination). The buffer stays valid for
   * the whole call, even if `take` closes the endpoint.
   * If `take` throws, every fd of the message is closed and the error is passed on unchanged (it
   * does not end the endpoint).
   * @param tail - when the payload has exactly the length it describes, its end is received straight
   *   into `tail.bytes` and the message is lent with `tailed: true` (see {@link PayloadTail}).
   *   `tail.bytes` may be written even if receiving fails later in the message.
   * @throws TransportError as {@link Endpoint.recv}, or whatever `take` throws.
   */
  async recvWith<T>(take: (msg: BorrowedMessage) => T, tail?: PayloadTail): Promise<T> {
    this.#check();
    const rx = this.#rx;
    let fds = NO_FDS;
    let msg: BorrowedMessage;
    try {
      while (!rx.poll(tail)) {
        this.#probeTail = tail;
        // The probe (rx.probe) reads for the wait: it ends once the frame is whole or an error waits.
        await this.#watch.readable(this.#probe);
        this.#check();
      }
      fds = rx.takeFds();
      const { request, flags } = rx;
      msg = this.#lend(request, flags, fds);
      // The frame's bytes stay where they are until the next receive: the views hold.
      rx.consume();
      const allowed = this.#fdsAllowed?.(request, flags) ?? this.#maxFds;
      if (fds.length > allowed) {
        throw new TransportError("FDS_NOT_ALLOWED", "retry", `request ${request}: ${fds.length} fds attached, at most ${allowed} allowed`, undefined, {
          expected: allowed,
          actual: fds.length,
        });
      }
    } catch (err) {
      for (const f of fds) f.close();
      if (err instanceof TransportError) {
        if (err.kind !== "retry") rx.closeHeld();
        throw this.#fail(err);
      }
      throw err;
    }
    this.#lending = true;
    try {
      return take(msg);
    } catch (err) {
      for (const f of fds) f.close();
      throw err;
    } finally {
      this.#lending = false;
      if (this.#closed) this.#freeBuffers();
    }
  }

  /**
   * The message lent to `recvWith`'s callback: one object per endpoint, refilled per message, its
   * views cached while the frame's place and length repeat (a request/reply stream allocates none).
   */
  #lend(request: number, flags: number, fds: OwnedFd[]): BorrowedMessage {
    const rx = this.#rx;
    const at = rx.frameOffset;
    const len = rx.inBuffer;
    const m = this.#lent;
    if (m.frame.byteOffset !== rx.rx.block.bytes.byteOffset + at || m.frame.length !== len || m.frame.buffer !== rx.rx.block.bytes.buffer) {
      m.frame = rx.rx.block.bytes.subarray(at, at + len);
      m.payload = m.frame.subarray(HEADER_SIZE);
    }
    m.request = request;
    m.flags = flags;
    m.fds = fds;
    m.tailed = rx.tailed;
    return m;
  }

  /** Resolves once the peer hung up, without reading (see {@link Watch.hangup}); never after {@link Endpoint.close}. */
  hangup(): Promise<void> {
    return this.#watch.hangup();
  }

  /** Close the socket; an outstanding `send`/`recv` rejects with `CLOSED`. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#watch.close();
    this.#sock.close();
    this.#rx.closeHeld();
    // A message lent to recvWith's callback keeps its buffer until the callback returns.
    if (!this.#lending) this.#freeBuffers();
  }

  #freeBuffers(): void {
    this.#rx.free();
    this.#tx.block.free();
  }

  /** `close()`. */
  [Symbol.dispose](): void {
    this.close();
  }
}
