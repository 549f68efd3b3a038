import { OwnedFd } from "./owned-fd.js";
import { TransportError, type TransportErrorKind } from "./transport-error.js";
import { classifyErrno, Errno } from "./sys/errno.js";
import { cmsgLen, cmsgSpace, CMSG_HDR, SCM_RIGHTS, SOL_SOCKET } from "./sys/cmsg.js";
import { eventfdSys, EFD_CLOEXEC, EFD_NONBLOCK } from "./sys/eventfd.js";
import { lastErrno } from "./sys/libc.js";
import {
  MSG_CMSG_CLOEXEC,
  MSG_CTRUNC,
  MSG_DONTWAIT,
  MSG_NOSIGNAL,
  nativeAlloc,
  POLLIN,
  socketSys,
  type NativeBlock,
} from "./sys/socket.js";

/** Size of the vhost-user message header in bytes (request u32, flags u32, size u32; host order). */
export const HEADER_SIZE = 12;

/** One received message. The caller owns `fds` and must close or transfer each. */
export interface ReceivedMessage {
  /** Request code (u32). */
  readonly request: number;
  /** Header flags (u32). */
  readonly flags: number;
  /** Payload bytes (a copy, length = header size field). */
  readonly payload: Uint8Array;
  /** fds that arrived with the header; owned by the caller. */
  readonly fds: OwnedFd[];
}

/** Endpoint limits. */
export interface EndpointOptions {
  /** Max fds per message (default 8). More -> `TOO_MANY_FDS`. */
  readonly maxFds?: number;
  /** Max payload bytes (default 4096). Larger size field -> `OVERSIZE`. */
  readonly maxPayload?: number;
}

const POLLOUT = 0x4;
const MSGHDR = 0;
const IOV = 64;
const CMSG = 128;

/** Native scratch: msghdr + iovec + control buffer + data area. */
class IoBlock {
  readonly block: NativeBlock;
  readonly cmsgCap: number;
  readonly dataOff: number;
  constructor(maxFds: number, dataLen: number) {
    // One extra fd slot so "one too many" is reported as TOO_MANY_FDS rather than MSG_CTRUNC.
    this.cmsgCap = cmsgSpace(4 * (maxFds + 1));
    this.dataOff = (CMSG + this.cmsgCap + 63) & ~63;
    this.block = nativeAlloc(this.dataOff + dataLen);
  }
  /** Fill msghdr/iovec for `len` bytes at data offset `off`, with `controlLen` bytes of control. */
  prepare(off: number, len: number, controlLen: number): void {
    const v = this.block.view;
    const a = this.block.addr;
    v.setBigUint64(MSGHDR + 0, 0n, true);
    v.setUint32(MSGHDR + 8, 0, true);
    v.setBigUint64(MSGHDR + 16, a + BigInt(IOV), true);
    v.setBigUint64(MSGHDR + 24, 1n, true);
    v.setBigUint64(MSGHDR + 32, controlLen > 0 ? a + BigInt(CMSG) : 0n, true);
    v.setBigUint64(MSGHDR + 40, BigInt(controlLen), true);
    v.setInt32(MSGHDR + 48, 0, true);
    v.setBigUint64(IOV, a + BigInt(this.dataOff + off), true);
    v.setBigUint64(IOV + 8, BigInt(len), true);
  }
}

/**
 * A vhost-user message endpoint on a connected AF_UNIX stream socket.
 *
 * Never blocks the JS thread: the socket is read with `MSG_DONTWAIT`; on EAGAIN the endpoint waits
 * with koffi `poll.async` (a koffi worker thread) on the socket plus a private wake-up eventfd that
 * {@link Endpoint.close} signals, so closing cancels any outstanding wait. Idle costs no CPU.
 * Receives the 12-byte header with its fds first (`MSG_CMSG_CLOEXEC`), then exactly `size` bytes.
 *
 * Takes ownership of the socket fd. One `recv` and one `send` may be outstanding at a time.
 */
export class Endpoint {
  readonly #sock: OwnedFd;
  readonly #wake: OwnedFd;
  readonly #maxFds: number;
  readonly #maxPayload: number;
  readonly #rx: IoBlock;
  readonly #tx: IoBlock;
  readonly #rxPoll: NativeBlock;
  readonly #txPoll: NativeBlock;
  #pending = 0;
  #closed = false;
  #released = false;
  #latched: TransportError | undefined;

  /**
   * @param sock - connected stream socket; ownership is taken.
   * @param options - limits.
   * @throws TransportError `SYSCALL` when the wake-up eventfd cannot be created (sock is closed).
   */
  constructor(sock: OwnedFd, options: EndpointOptions = {}) {
    this.#sock = sock;
    this.#maxFds = options.maxFds ?? 8;
    this.#maxPayload = options.maxPayload ?? 4096;
    const wfd = eventfdSys(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wfd < 0) {
      const e = lastErrno();
      sock.close();
      throw new TransportError("SYSCALL", classifyErrno(e), `eventfd failed: errno ${e}`, { errno: e, syscall: "eventfd" });
    }
    this.#wake = new OwnedFd(wfd);
    this.#rx = new IoBlock(this.#maxFds, HEADER_SIZE + this.#maxPayload);
    this.#tx = new IoBlock(this.#maxFds, HEADER_SIZE + this.#maxPayload);
    this.#rxPoll = nativeAlloc(16);
    this.#txPoll = nativeAlloc(16);
  }

  /** The error that ended this endpoint, if any. */
  get error(): TransportError | undefined {
    return this.#latched;
  }

  #fail(err: TransportError): TransportError {
    if (err.kind !== "retry") this.#latched ??= err;
    return err;
  }

  #check(): void {
    if (this.#latched) throw this.#latched;
    if (this.#closed) throw new TransportError("CLOSED", "broken", "endpoint closed");
  }

  /** Wait until `fd` is ready for `events`, or the wake fd fires. */
  #waitReady(pollBlock: NativeBlock, events: number): Promise<void> {
    const v = pollBlock.view;
    v.setInt32(0, this.#sock.fd, true);
    v.setInt16(4, events, true);
    v.setInt16(6, 0, true);
    v.setInt32(8, this.#wake.fd, true);
    v.setInt16(12, POLLIN, true);
    v.setInt16(14, 0, true);
    this.#pending++;
    return new Promise((resolve, reject) => {
      // SAFETY: pollBlock is native memory that stays allocated until #pending drops to 0.
      socketSys().poll.async(pollBlock.ptr, 2, -1, (err: unknown) => {
        this.#pending--;
        if (this.#closed) {
          this.#release();
          reject(new TransportError("CLOSED", "broken", "endpoint closed while waiting"));
          return;
        }
        if (err) reject(err);
        else resolve();
      });
    });
  }

  /**
   * Send one message; the fds (borrowed, not closed) travel with the first byte of the header.
   * @throws TransportError `OVERSIZE`, `TOO_MANY_FDS`, `SYSCALL` (disconnected on EPIPE/ECONNRESET), `CLOSED`.
   */
  async send(request: number, flags: number, payload: Uint8Array = new Uint8Array(0), fds: readonly number[] = []): Promise<void> {
    this.#check();
    if (payload.length > this.#maxPayload) {
      throw new TransportError("OVERSIZE", "broken", `request ${request}: payload 0x${payload.length.toString(16)} exceeds max 0x${this.#maxPayload.toString(16)}`, undefined, { expected: this.#maxPayload, actual: payload.length });
    }
    if (fds.length > this.#maxFds) {
      throw new TransportError("TOO_MANY_FDS", "broken", `request ${request}: ${fds.length} fds exceed max ${this.#maxFds}`, undefined, { expected: this.#maxFds, actual: fds.length });
    }
    const tx = this.#tx;
    const v = tx.block.view;
    const d = tx.dataOff;
    v.setUint32(d, request, true);
    v.setUint32(d + 4, flags, true);
    v.setUint32(d + 8, payload.length, true);
    tx.block.bytes.set(payload, d + HEADER_SIZE);
    const total = HEADER_SIZE + payload.length;
    let sent = 0;
    while (sent < total) {
      let control = 0;
      if (sent === 0 && fds.length > 0) {
        control = cmsgSpace(4 * fds.length);
        v.setBigUint64(CMSG, BigInt(cmsgLen(4 * fds.length)), true);
        v.setInt32(CMSG + 8, SOL_SOCKET, true);
        v.setInt32(CMSG + 12, SCM_RIGHTS, true);
        fds.forEach((fd, i) => v.setInt32(CMSG + CMSG_HDR + 4 * i, fd, true));
      }
      tx.prepare(sent, total - sent, control);
      // SAFETY: msghdr, iovec and control all point into tx.block, alive for the call.
      const n = Number(socketSys().sendmsg(this.#sock.fd, tx.block.ptr, MSG_DONTWAIT | MSG_NOSIGNAL));
      if (n < 0) {
        const e = lastErrno();
        if (e === Errno.EINTR) continue;
        if (e === Errno.EAGAIN) {
          await this.#waitReady(this.#txPoll, POLLOUT);
          this.#check();
          continue;
        }
        throw this.#fail(new TransportError("SYSCALL", classifyErrno(e), `request ${request}: sendmsg failed: errno ${e}`, { errno: e, syscall: "sendmsg" }));
      }
      sent += n;
    }
  }

  /** One recvmsg into rx data [off, off+len); returns bytes read (0 = EOF) and collected fds. */
  async #recvSome(off: number, len: number, fds: OwnedFd[], request: number | undefined): Promise<number> {
    const rx = this.#rx;
    for (;;) {
      rx.prepare(off, len, rx.cmsgCap);
      // SAFETY: msghdr/iovec/control point into rx.block; MSG_CMSG_CLOEXEC sets FD_CLOEXEC atomically.
      const n = Number(socketSys().recvmsg(this.#sock.fd, rx.block.ptr, MSG_DONTWAIT | MSG_CMSG_CLOEXEC));
      if (n < 0) {
        const e = lastErrno();
        if (e === Errno.EINTR) continue;
        if (e === Errno.EAGAIN) {
          await this.#waitReady(this.#rxPoll, POLLIN);
          this.#check();
          continue;
        }
        throw new TransportError("SYSCALL", classifyErrno(e), `recvmsg failed: errno ${e}`, { errno: e, syscall: "recvmsg" });
      }
      const v = rx.block.view;
      const controlLen = Number(v.getBigUint64(MSGHDR + 40, true));
      const msgFlags = v.getInt32(MSGHDR + 48, true);
      let bad: TransportError | undefined;
      let c = 0;
      while (c + CMSG_HDR <= controlLen) {
        const clen = Number(v.getBigUint64(CMSG + c, true));
        const level = v.getInt32(CMSG + c + 8, true);
        const type = v.getInt32(CMSG + c + 12, true);
        if (clen < CMSG_HDR || c + clen > controlLen) break;
        if (level === SOL_SOCKET && type === SCM_RIGHTS) {
          const count = (clen - CMSG_HDR) >> 2;
          for (let i = 0; i < count; i++) fds.push(new OwnedFd(v.getInt32(CMSG + c + CMSG_HDR + 4 * i, true)));
        } else {
          bad ??= new TransportError("BAD_CMSG", "broken", `unexpected control message level ${level} type ${type}`);
        }
        c += (clen + 7) & ~7;
      }
      const name = request === undefined ? "header" : `request ${request}`;
      if (msgFlags & MSG_CTRUNC) bad = new TransportError("CTRUNC", "broken", `${name}: control data truncated (MSG_CTRUNC)`);
      else if (fds.length > this.#maxFds) bad ??= new TransportError("TOO_MANY_FDS", "broken", `${name}: ${fds.length} fds exceed max ${this.#maxFds}`, undefined, { expected: this.#maxFds, actual: fds.length });
      if (bad) throw bad;
      return n;
    }
  }

  /**
   * Receive one message: the header with its fds, then exactly `size` payload bytes.
   * On any error every fd received for the message is closed and the error is latched.
   * @throws TransportError `EOF` (disconnected, or partial mid-message), `OVERSIZE`, `TOO_MANY_FDS`,
   *   `CTRUNC`, `FDS_ON_BODY`, `SYSCALL`, `CLOSED`.
   */
  async recv(): Promise<ReceivedMessage> {
    this.#check();
    const fds: OwnedFd[] = [];
    try {
      let got = 0;
      while (got < HEADER_SIZE) {
        const n = await this.#recvSome(got, HEADER_SIZE - got, fds, undefined);
        if (n === 0) throw this.#eof(got, "header");
        got += n;
      }
      const v = this.#rx.block.view;
      const d = this.#rx.dataOff;
      const request = v.getUint32(d, true);
      const flags = v.getUint32(d + 4, true);
      const size = v.getUint32(d + 8, true);
      if (size > this.#maxPayload) {
        throw new TransportError("OVERSIZE", "broken", `request ${request}: size 0x${size.toString(16)} exceeds max 0x${this.#maxPayload.toString(16)}`, undefined, { offset: 8, expected: this.#maxPayload, actual: size });
      }
      let body = 0;
      while (body < size) {
        const extra: OwnedFd[] = [];
        let n: number;
        try {
          n = await this.#recvSome(HEADER_SIZE + body, size - body, extra, request);
        } finally {
          fds.push(...extra);
        }
        if (extra.length > 0) {
          throw new TransportError("FDS_ON_BODY", "broken", `request ${request}: fds attached to body at offset 0x${(HEADER_SIZE + body).toString(16)}`, undefined, { offset: HEADER_SIZE + body });
        }
        if (n === 0) throw this.#eof(HEADER_SIZE + body, `request ${request}`);
        body += n;
      }
      const payload = this.#rx.block.bytes.slice(d + HEADER_SIZE, d + HEADER_SIZE + size);
      return { request, flags, payload, fds };
    } catch (err) {
      for (const f of fds) f.close();
      if (err instanceof TransportError) throw this.#fail(err);
      throw err;
    }
  }

  #eof(offset: number, what: string): TransportError {
    const kind: TransportErrorKind = offset === 0 ? "disconnected" : "partial";
    return new TransportError("EOF", kind, `${what}: peer closed at offset 0x${offset.toString(16)}`, undefined, { offset });
  }

  /** Close the socket and cancel any outstanding wait (its promise rejects with `CLOSED`). Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#pending > 0) {
      // SAFETY: wakes poll.async on the koffi worker; native memory is released in its callback.
      const one = new Uint8Array(8);
      one[0] = 1;
      socketSys().write(this.#wake.fd, one, 8);
    } else {
      this.#release();
    }
  }

  #release(): void {
    if (this.#released || this.#pending > 0) return;
    this.#released = true;
    this.#sock.close();
    this.#wake.close();
    this.#rx.block.free();
    this.#tx.block.free();
    this.#rxPoll.free();
    this.#txPoll.free();
  }

  /** `close()`. */
  [Symbol.dispose](): void {
    this.close();
  }
}
