import { OwnedFd } from "./owned-fd.js";
import { TransportError, type TransportErrorKind } from "./transport-error.js";
import { classifyErrno, Errno } from "./sys/errno.js";
import { describeErrno } from "./errno-text.js";
import { cmsgLen, cmsgSpace, CMSG_HDR, SCM_RIGHTS, SOL_SOCKET } from "./sys/cmsg.js";
import { CMSG, GATHER_MIN, getSmallU64, IoBlock, MAX_IOV, MSGHDR, setU64 } from "./io-block.js";
import { lastErrno } from "./sys/libc.js";
import { addressOf, MSG_CMSG_CLOEXEC, MSG_CTRUNC, MSG_DONTWAIT, MSG_NOSIGNAL, socketSys } from "./sys/socket.js";
import { HEADER_SIZE, MAX_FDS_PER_MSG, MAX_PAYLOAD_SIZE } from "@vhostkit/wire";
import { Reactor } from "./reactor.js";
import type { Watch } from "./watch.js";

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
  /** fds that arrived with the header; owned by the caller. */
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

/**
 * Where {@link Endpoint.recvWith} puts the end of a payload of a length the caller expects (for
 * example the data of a MEM_READ reply): when the payload is exactly `offset + bytes.length` bytes
 * long, its bytes from `offset` on are received by the kernel straight into `bytes`, with no copy
 * through the receive buffer. A payload of any other length is received as usual.
 */
export interface PayloadTail {
  /** Receives the payload's last `bytes.length` bytes (borrowed; written only by the kernel's copy). */
  readonly bytes: Uint8Array;
  /** Payload bytes that come before the tail (received into the receive buffer as usual). */
  readonly offset: number;
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
/** {@link Endpoint}'s "nothing to read yet" (EAGAIN) result of one non-blocking recvmsg. */
const AGAIN = -1;

/**
 * Keep a message lent by {@link Endpoint.recvWith}: the copy {@link Endpoint.recv} makes (one buffer
 * for the frame, the payload a view of it; the fds move to the copy).
 */
export function copyMessage(m: BorrowedMessage): ReceivedMessage {
  const frame = m.frame.slice();
  return { request: m.request, flags: m.flags, payload: frame.subarray(HEADER_SIZE), frame, fds: m.fds };
}

/**
 * A vhost-user message endpoint on a connected AF_UNIX stream socket.
 *
 * Never blocks the JS thread: `sendmsg`/`recvmsg` run with `MSG_DONTWAIT`; on EAGAIN the endpoint
 * waits for readiness through its {@link Reactor} (one edge-triggered epoll set served by one koffi
 * worker thread for all fds). Idle costs no CPU.
 *
 * Framing (docs/protocol.md#file-descriptors): fds are attached to the **first byte of the header** on send; on
 * receive the 12-byte header is read together with its fds (`MSG_CMSG_CLOEXEC`) and then exactly
 * `size` payload bytes, never more, so a read never crosses a message boundary. fds arriving with
 * body bytes are a protocol error (`FDS_ON_BODY`).
 *
 * Takes ownership of the socket fd. One `recv` and one `send` may be outstanding at a time.
 */
export class Endpoint {
  readonly #sock: OwnedFd;
  readonly #watch: Watch;
  readonly #maxFds: number;
  readonly #maxPayload: number;
  readonly #fdsAllowed: ((request: number, flags: number) => number) | undefined;
  readonly #rx: IoBlock;
  readonly #tx: IoBlock;
  #closed = false;
  #lending = false;
  #latched: TransportError | undefined;

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
    this.#rx = new IoBlock(this.#maxFds, HEADER_SIZE + this.#maxPayload);
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
  async send(request: number, flags: number, payload: Uint8Array | readonly Uint8Array[] = EMPTY, fds: readonly number[] = []): Promise<void> {
    this.#check();
    const parts = payload instanceof Uint8Array ? [payload] : payload;
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
      fds.forEach((fd, i) => v.setInt32(CMSG + CMSG_HDR + 4 * i, fd, true));
    }
    // Every part has its place in the send buffer; short ones are copied there now, long ones
    // (up to MAX_IOV - 1 of them) are gathered by the kernel from their own memory.
    const gathered = this.#prepareGathered(parts, control);
    const first = this.#sendOnce(request);
    let sent = first === AGAIN ? 0 : first;
    if (sent === total) return;
    // Partial write or EAGAIN: copy what the gather skipped, synchronously, before the first await
    // (a part may be a view of guest memory that is gone by the time the socket drains).
    if (gathered !== 0) this.#copyGathered(parts, gathered);
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
   * One non-blocking recvmsg into rx data [off, off+len): bytes read (0 = EOF), or {@link AGAIN}
   * when nothing is there yet; received fds are appended to `fds`. Synchronous, so a message that
   * is already queued is read without a promise per system call. With `tail`, frame bytes from
   * HEADER_SIZE + tail.offset on go into `tail.bytes` instead (the payload's length matches it).
   */
  #recvOnce(off: number, len: number, fds: OwnedFd[], request: number | undefined, tail?: PayloadTail): number {
    const rx = this.#rx;
    let n: number;
    for (;;) {
      const split = tail === undefined ? off + len : HEADER_SIZE + tail.offset;
      if (off + len <= split) rx.prepare(off, len, rx.cmsgCap);
      else if (off < split) {
        rx.prepare(off, split - off, rx.cmsgCap);
        // SAFETY: the address is used by the recvmsg below, synchronously, while the caller holds `tail`.
        rx.setIov(1, addressOf(tail!.bytes), off + len - split);
        rx.iovCount(2);
      } else {
        rx.control(rx.cmsgCap);
        rx.setIov(0, addressOf(tail!.bytes) + (off - split), len);
        rx.iovCount(1);
      }
      // SAFETY: msghdr/iovec/control point into rx.block; MSG_CMSG_CLOEXEC sets FD_CLOEXEC atomically.
      n = Number(socketSys().recvmsg(this.#sock.fd, rx.block.ptr, MSG_DONTWAIT | MSG_CMSG_CLOEXEC));
      if (n >= 0) break;
      const e = lastErrno();
      if (e === Errno.EINTR) continue;
      if (e === Errno.EAGAIN) return AGAIN;
      throw new TransportError("SYSCALL", classifyErrno(e), `recvmsg: ${describeErrno(e)}`, { errno: e, syscall: "recvmsg" });
    }
    const v = rx.block.view;
    const controlLen = getSmallU64(v, MSGHDR + 40);
    const msgFlags = v.getInt32(MSGHDR + 48, true);
    if (controlLen === 0 && (msgFlags & MSG_CTRUNC) === 0) return n;
    const start = fds.length;
    let bad: TransportError | undefined;
    let c = 0;
    while (c + CMSG_HDR <= controlLen) {
      const clen = getSmallU64(v, CMSG + c);
      const level = v.getInt32(CMSG + c + 8, true);
      const type = v.getInt32(CMSG + c + 12, true);
      if (clen < CMSG_HDR || c + clen > controlLen) break;
      if (level === SOL_SOCKET && type === SCM_RIGHTS) {
        const count = (clen - CMSG_HDR) >> 2;
        // Ownership: every fd the kernel installed is wrapped at once so every error path closes it.
        for (let i = 0; i < count; i++) fds.push(new OwnedFd(v.getInt32(CMSG + c + CMSG_HDR + 4 * i, true)));
      } else {
        bad ??= new TransportError("BAD_CMSG", "broken", `unexpected control message level ${level} type ${type}`);
      }
      c += (clen + 7) & ~7;
    }
    const name = request === undefined ? "header" : `request ${request}`;
    if (msgFlags & MSG_CTRUNC) bad = new TransportError("CTRUNC", "broken", `${name}: control data truncated (MSG_CTRUNC)`);
    else if (fds.length - start > this.#maxFds)
      bad ??= new TransportError("TOO_MANY_FDS", "broken", `${name}: ${fds.length - start} fds exceed max ${this.#maxFds}`, undefined, {
        expected: this.#maxFds,
        actual: fds.length - start,
      });
    if (bad) throw bad;
    return n;
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
    const fds: OwnedFd[] = [];
    let msg: BorrowedMessage;
    try {
      let got = 0;
      while (got < HEADER_SIZE) {
        const n = this.#recvOnce(got, HEADER_SIZE - got, fds, undefined);
        if (n === AGAIN) {
          await this.#watch.readable();
          this.#check();
          continue;
        }
        if (n === 0) throw this.#eof(got, "header");
        got += n;
      }
      const v = this.#rx.block.view;
      const d = this.#rx.dataOff;
      const request = v.getUint32(d, true);
      const flags = v.getUint32(d + 4, true);
      const size = v.getUint32(d + 8, true);
      if (size > this.#maxPayload) {
        throw new TransportError(
          "OVERSIZE",
          "broken",
          `request ${request}: size 0x${size.toString(16)} exceeds max 0x${this.#maxPayload.toString(16)}`,
          undefined,
          { offset: 8, expected: this.#maxPayload, actual: size },
        );
      }
      const into = tail !== undefined && size === tail.offset + tail.bytes.length && tail.bytes.length > 0 ? tail : undefined;
      let body = 0;
      while (body < size) {
        // fds that come with body bytes land in `fds` too (so the error path closes them) and are an error.
        const before = fds.length;
        const n = this.#recvOnce(HEADER_SIZE + body, size - body, fds, request, into);
        if (n === AGAIN) {
          await this.#watch.readable();
          this.#check();
          continue;
        }
        if (fds.length > before) {
          throw new TransportError(
            "FDS_ON_BODY",
            "broken",
            `request ${request}: fds attached to body at offset 0x${(HEADER_SIZE + body).toString(16)}`,
            undefined,
            { offset: HEADER_SIZE + body },
          );
        }
        if (n === 0) throw this.#eof(HEADER_SIZE + body, `request ${request}`);
        body += n;
      }
      const allowed = this.#fdsAllowed?.(request, flags) ?? this.#maxFds;
      if (fds.length > allowed) {
        throw new TransportError("FDS_NOT_ALLOWED", "retry", `request ${request}: ${fds.length} fds attached, at most ${allowed} allowed`, undefined, {
          expected: allowed,
          actual: fds.length,
        });
      }
      const frame = this.#rx.block.bytes.subarray(d, d + HEADER_SIZE + (into === undefined ? size : into.offset));
      msg = { request, flags, payload: frame.subarray(HEADER_SIZE), frame, fds, tailed: into !== undefined };
    } catch (err) {
      for (const f of fds) f.close();
      if (err instanceof TransportError) throw this.#fail(err);
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

  #eof(offset: number, what: string): TransportError {
    const kind: TransportErrorKind = offset === 0 ? "disconnected" : "partial";
    return new TransportError("EOF", kind, `${what}: peer closed at offset 0x${offset.toString(16)}`, undefined, { offset });
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
    // A message lent to recvWith's callback keeps its buffer until the callback returns.
    if (!this.#lending) this.#freeBuffers();
  }

  #freeBuffers(): void {
    this.#rx.block.free();
    this.#tx.block.free();
  }

  /** `close()`. */
  [Symbol.dispose](): void {
    this.close();
  }
}
