/**
 * Pipes between processes for a stream of bytes that ends with EOF (the device state channel of
 * SET_DEVICE_STATE_FD, docs/protocol.md#device-state-transfer): one end read or written without
 * ever blocking the JS thread.
 * @module
 */
import { OwnedFd } from "./owned-fd.js";
import { Reactor } from "./reactor.js";
import type { Watch } from "./watch.js";
import { TransportError } from "./transport-error.js";
import { Errno } from "./sys/errno.js";
import { sysError } from "./event-fd.js";
import { lastErrno } from "./sys/libc.js";
import { setNonBlocking, socketSys } from "./sys/socket.js";

/** Which way bytes go through a {@link PipeEnd}: this process reads them, or writes them. */
export type PipeDirection = "read" | "write";

const O_CLOEXEC = 0o2000000;
const F_GETFL = 3;
const O_ACCMODE = 3;
const O_RDONLY = 0;
const O_WRONLY = 1;
/** fcntl(F_GETPIPE_SZ): succeeds on pipes and FIFOs only (EBADF on anything else). */
const F_GETPIPE_SZ = 1032;
/** Bytes one non-blocking read asks for. */
const READ_CHUNK = 64 * 1024;

/**
 * A new pipe, both ends close-on-exec and **blocking** (the end sent to a peer keeps its file
 * status flags, and a peer that does not expect `O_NONBLOCK` would fail on EAGAIN); wrap the end
 * this process keeps in a {@link PipeEnd}, which makes only that end non-blocking.
 * @returns both ends, owned by the caller.
 * @throws TransportError `SYSCALL` when pipe2(2) fails.
 */
export function createPipe(): { readonly readEnd: OwnedFd; readonly writeEnd: OwnedFd } {
  const fds = new Int32Array(2);
  // SAFETY: fds is an out-array of two ints.
  if (socketSys().pipe2(fds, O_CLOEXEC) !== 0) throw sysError("pipe2");
  return { readEnd: new OwnedFd(fds[0] ?? -1), writeEnd: new OwnedFd(fds[1] ?? -1) };
}

/**
 * One end of a pipe (or FIFO), read to EOF or written and closed, whose waits go through the
 * {@link Reactor}. Writing after the reader went away fails with `SYSCALL` (EPIPE, kind
 * `disconnected`); the runtimes ignore SIGPIPE, so the process stays up.
 */
export class PipeEnd {
  readonly #fd: OwnedFd;
  readonly #watch: Watch;
  readonly #direction: PipeDirection;
  readonly #chunk = new Uint8Array(READ_CHUNK);

  private constructor(fd: OwnedFd, watch: Watch, direction: PipeDirection) {
    this.#fd = fd;
    this.#watch = watch;
    this.#direction = direction;
  }

  /**
   * Wraps `fd`, checking that it is a pipe or FIFO open for `direction`, and switches it to
   * `O_NONBLOCK` (a peer's pipe end shares that flag with the peer's copy, if it kept one).
   * @param fd - the pipe end; ownership is taken (closed here when a check fails).
   * @param direction - `read` (this process reads to EOF) or `write`.
   * @param reactor - readiness source (default {@link Reactor.shared}).
   * @throws TransportError `NOT_A_PIPE` when `fd` is not a pipe or FIFO, `BAD_FD_MODE` when it is
   *   not open for `direction`, `SYSCALL` when fcntl or the reactor refuses it.
   */
  static open(fd: OwnedFd, direction: PipeDirection, reactor: Reactor = Reactor.shared()): PipeEnd {
    try {
      const s = socketSys();
      // SAFETY: fcntl on an fd this function owns; F_GETPIPE_SZ and F_GETFL only read.
      if (s.fcntl(fd.fd, F_GETPIPE_SZ, 0) < 0) {
        const e = lastErrno();
        if (e === Errno.EBADF) throw new TransportError("NOT_A_PIPE", "broken", `fd ${fd.fd} is not a pipe or fifo`, { errno: e, syscall: "fcntl" });
        throw sysError("fcntl", e);
      }
      const fl = s.fcntl(fd.fd, F_GETFL, 0);
      if (fl < 0) throw sysError("fcntl");
      const mode = fl & O_ACCMODE;
      if (mode === (direction === "read" ? O_WRONLY : O_RDONLY)) {
        throw new TransportError(
          "BAD_FD_MODE",
          "broken",
          `pipe fd ${fd.fd} is the ${direction === "read" ? "write" : "read"} end, expected the ${direction} end`,
        );
      }
      if (setNonBlocking(fd.fd) !== 0) throw sysError("fcntl");
      return new PipeEnd(fd, reactor.watch(fd.fd, `pipe ${direction} end`), direction);
    } catch (err) {
      fd.close();
      throw err;
    }
  }

  /** The raw fd, borrowed; -1 after close. */
  get fd(): number {
    return this.#fd.fd;
  }

  /** True once {@link PipeEnd.close} ran. */
  get closed(): boolean {
    return this.#fd.closed;
  }

  /**
   * Reads what is there (at most `max` bytes, up to 64 KiB), waiting until something is.
   * @returns a fresh copy of the bytes; empty at EOF (every writer closed its end).
   * @throws TransportError `CLOSED` when closed (also while waiting), `SYSCALL` on a read failure.
   */
  async read(max = READ_CHUNK): Promise<Uint8Array> {
    this.#expect("read");
    const want = Math.max(1, Math.min(max, READ_CHUNK));
    for (;;) {
      this.#check();
      // SAFETY: non-blocking read into this end's private buffer of READ_CHUNK >= want bytes.
      const n = Number(socketSys().read(this.#fd.fd, this.#chunk, want));
      if (n >= 0) return this.#chunk.slice(0, n);
      const e = lastErrno();
      if (e === Errno.EINTR) continue;
      if (e !== Errno.EAGAIN) throw sysError("read", e);
      await this.#watch.readable();
    }
  }

  /**
   * Writes every byte of `bytes`, waiting for room in the pipe as often as needed.
   * @throws TransportError `SYSCALL` (EPIPE, kind `disconnected`) when the reader closed its end,
   *   `CLOSED` when closed (also while waiting).
   */
  async write(bytes: Uint8Array): Promise<void> {
    this.#expect("write");
    let done = 0;
    while (done < bytes.byteLength) {
      this.#check();
      const rest = done === 0 ? bytes : bytes.subarray(done);
      // SAFETY: koffi reads `rest.byteLength` bytes from the view; the fd is non-blocking.
      const n = Number(socketSys().write(this.#fd.fd, rest, rest.byteLength));
      if (n > 0) {
        done += n;
        continue;
      }
      const e = n === 0 ? Errno.EAGAIN : lastErrno();
      if (e === Errno.EINTR) continue;
      if (e !== Errno.EAGAIN) throw sysError("write", e);
      await this.#watch.writable();
    }
  }

  /** Closes this end (the reader then sees EOF); a pending wait rejects with `CLOSED`. Idempotent. */
  close(): void {
    // SAFETY: the watch is deregistered before the fd closes; both calls are idempotent.
    this.#watch.close();
    this.#fd.close();
  }

  /** `close()`. */
  [Symbol.dispose](): void {
    this.close();
  }

  #check(): void {
    if (this.#fd.closed) throw new TransportError("CLOSED", "broken", `pipe ${this.#direction} end closed`);
  }

  #expect(direction: PipeDirection): void {
    if (direction !== this.#direction) throw new TransportError("BAD_FD_MODE", "broken", `pipe ${this.#direction} end cannot ${direction}`);
  }
}
