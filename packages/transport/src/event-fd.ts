import { OwnedFd } from "./owned-fd.js";
import { Reactor } from "./reactor.js";
import type { Watch } from "./watch.js";
import { TransportError } from "./transport-error.js";
import { classifyErrno, Errno } from "./sys/errno.js";
import { describeErrno } from "./errno-text.js";
import { eventFdIo, eventfdSys, EFD_CLOEXEC, EFD_NONBLOCK, type EventFdIo } from "./sys/eventfd.js";
import { lastErrno } from "./sys/libc.js";
import { setNonBlocking } from "./sys/socket.js";

/**
 * An eventfd (kick/call/err fds, docs/protocol.md#notification-fds) whose {@link EventFd.wait} never blocks the JS
 * thread: a non-blocking read, and on EAGAIN a readiness wait through the {@link Reactor}. Idle costs
 * no CPU. A pipe read end (non-Linux front-ends use pipes) works too. The counter's reads and writes
 * go through `bun:ffi` under Bun and koffi under Node (`sys/eventfd.ts`).
 */
export class EventFd {
  readonly #fd: OwnedFd;
  readonly #watch: Watch;
  readonly #io: EventFdIo = eventFdIo();
  #waiting = false;
  #closed = false;

  /**
   * Wrap an existing eventfd (e.g. one received with SET_VRING_KICK); takes ownership (closed here
   * if construction fails). The fd is switched to `O_NONBLOCK`, because a peer may have sent a
   * blocking one and a blocking read would stall the event loop.
   * @param fd - the eventfd; ownership is taken.
   * @param reactor - readiness source (default {@link Reactor.shared}).
   * @throws TransportError `SYSCALL` when the fd cannot be made non-blocking or watched (for example
   *   EPERM: a regular file instead of an eventfd).
   */
  constructor(fd: OwnedFd, reactor: Reactor = Reactor.shared()) {
    this.#fd = fd;
    try {
      if (setNonBlocking(fd.fd) !== 0) throw sysError("fcntl");
      this.#watch = reactor.watch(fd.fd, "eventfd");
    } catch (err) {
      fd.close();
      throw err;
    }
  }

  /**
   * Create a fresh non-blocking close-on-exec eventfd.
   * @param initial - initial counter value (u32).
   * @throws TransportError `SYSCALL` when eventfd(2) fails.
   */
  static create(initial = 0): EventFd {
    const fd = eventfdSys(initial, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0) throw sysError("eventfd");
    return new EventFd(new OwnedFd(fd));
  }

  /** The raw fd, borrowed (e.g. to send with SET_VRING_CALL); -1 after close. */
  get fd(): number {
    return this.#fd.fd;
  }

  /**
   * Add `n` (u64, default 1) to the counter: "kick" or "call".
   * @throws TransportError `SYSCALL` on write failure, `CLOSED` after close.
   */
  signal(n = 1n): void {
    if (this.#closed) throw new TransportError("CLOSED", "broken", "eventfd closed");
    // SAFETY: an eventfd write takes exactly 8 bytes (a host-order u64) from the leg's scratch.
    const io = this.#io;
    if ((n === 1n ? io.writeOne(this.#fd.fd) : io.write(this.#fd.fd, n)) !== 8) throw sysError("write", io.errno());
  }

  /**
   * Read and reset the counter without waiting.
   * @returns the counter value (u64), or 0n when it was zero.
   * @throws TransportError `SYSCALL` on read failure, `CLOSED` after close.
   */
  poll(): bigint {
    if (this.#closed) throw new TransportError("CLOSED", "broken", "eventfd closed");
    for (;;) {
      // SAFETY: non-blocking read of one u64 into the leg's 8-byte scratch.
      const io = this.#io;
      const n = io.read(this.#fd.fd);
      if (n === 8) return io.value();
      if (n >= 0) throw new TransportError("SYSCALL", "broken", `eventfd read returned ${n} bytes`, { errno: 0, syscall: "read" });
      const e = io.errno();
      if (e === Errno.EINTR) continue;
      if (e === Errno.EAGAIN) return 0n;
      throw sysError("read", e);
    }
  }

  /**
   * Wait until the counter is non-zero, then read and reset it.
   * @returns the counter value (u64) that was read (> 0).
   * @throws TransportError `CLOSED` when closed while waiting, `BUSY` if a wait is already pending.
   */
  async wait(): Promise<bigint> {
    if (this.#waiting) throw new TransportError("BUSY", "retry", "eventfd wait already pending");
    this.#waiting = true;
    try {
      for (;;) {
        const v = this.poll();
        if (v !== 0n) return v;
        await this.#watch.readable();
      }
    } finally {
      this.#waiting = false;
    }
  }

  /** Close the eventfd; a pending wait rejects with `CLOSED`. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#watch.close();
    this.#fd.close();
  }

  /** `close()`. */
  [Symbol.dispose](): void {
    this.close();
  }
}

/** A failed system call as a `SYSCALL` transport error (errno read now unless given). @internal */
export function sysError(syscall: string, e = lastErrno()): TransportError {
  return new TransportError("SYSCALL", classifyErrno(e), `${syscall}: ${describeErrno(e)}`, { errno: e, syscall });
}
