import { OwnedFd } from "./owned-fd.js";
import { TransportError } from "./transport-error.js";
import { classifyErrno, Errno } from "./sys/errno.js";
import { eventfdSys, EFD_CLOEXEC, EFD_NONBLOCK } from "./sys/eventfd.js";
import { lastErrno } from "./sys/libc.js";
import { nativeAlloc, POLLIN, socketSys, type NativeBlock } from "./sys/socket.js";

/**
 * An eventfd (kick/call/err fds) with a wait that never blocks the JS thread: a non-blocking read,
 * and on EAGAIN a koffi `poll.async` on the eventfd plus a private wake-up eventfd that
 * {@link EventFd.close} signals, so closing cancels a pending wait. Idle costs no CPU.
 */
export class EventFd {
  readonly #fd: OwnedFd;
  readonly #wake: OwnedFd;
  readonly #poll: NativeBlock;
  #pending = false;
  #closed = false;

  /**
   * Wrap an existing eventfd (e.g. one received with SET_VRING_KICK); takes ownership. The fd
   * must be O_NONBLOCK (front-ends create them so), otherwise `wait()` blocks the thread.
   * @throws TransportError `SYSCALL` when the wake-up eventfd cannot be created.
   */
  constructor(fd: OwnedFd) {
    this.#fd = fd;
    this.#wake = new OwnedFd(checked(eventfdSys(0, EFD_CLOEXEC | EFD_NONBLOCK), "eventfd"));
    this.#poll = nativeAlloc(16);
  }

  /**
   * Create a fresh non-blocking close-on-exec eventfd.
   * @param initial - initial counter value (u32).
   * @throws TransportError `SYSCALL` when eventfd(2) fails.
   */
  static create(initial = 0): EventFd {
    return new EventFd(new OwnedFd(checked(eventfdSys(initial, EFD_CLOEXEC | EFD_NONBLOCK), "eventfd")));
  }

  /** The raw fd, borrowed (e.g. to send with SET_VRING_CALL); -1 after close. */
  get fd(): number {
    return this.#fd.fd;
  }

  /**
   * Add `n` (u64, default 1) to the counter.
   * @throws TransportError `SYSCALL` on write failure, `CLOSED` after close.
   */
  signal(n = 1n): void {
    if (this.#closed) throw new TransportError("CLOSED", "broken", "eventfd closed");
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, n, true);
    // SAFETY: an eventfd write takes exactly 8 bytes (a host-order u64).
    if (Number(socketSys().write(this.#fd.fd, b, 8)) !== 8) {
      const e = lastErrno();
      throw new TransportError("SYSCALL", classifyErrno(e), `eventfd write failed: errno ${e}`, { errno: e, syscall: "write" });
    }
  }

  /**
   * Wait until the counter is non-zero, read and reset it.
   * @returns the counter value (u64) that was read.
   * @throws TransportError `CLOSED` when closed while waiting, `BUSY` if a wait is already pending.
   */
  async wait(): Promise<bigint> {
    if (this.#pending) throw new TransportError("BUSY", "retry", "eventfd wait already pending");
    const b = new Uint8Array(8);
    for (;;) {
      if (this.#closed) throw new TransportError("CLOSED", "broken", "eventfd closed");
      const n = Number(socketSys().read(this.#fd.fd, b, 8));
      if (n === 8) return new DataView(b.buffer).getBigUint64(0, true);
      const e = lastErrno();
      if (e === Errno.EINTR) continue;
      if (e !== Errno.EAGAIN) {
        throw new TransportError("SYSCALL", classifyErrno(e), `eventfd read failed: errno ${e}`, { errno: e, syscall: "read" });
      }
      await this.#waitReadable();
    }
  }

  #waitReadable(): Promise<void> {
    const v = this.#poll.view;
    v.setInt32(0, this.#fd.fd, true);
    v.setInt16(4, POLLIN, true);
    v.setInt16(6, 0, true);
    v.setInt32(8, this.#wake.fd, true);
    v.setInt16(12, POLLIN, true);
    v.setInt16(14, 0, true);
    this.#pending = true;
    return new Promise((resolve) => {
      // SAFETY: #poll stays allocated until the callback runs (#release waits for !#pending).
      socketSys().poll.async(this.#poll.ptr, 2, -1, () => {
        this.#pending = false;
        if (this.#closed) this.#release();
        resolve();
      });
    });
  }

  /** Close the eventfd; a pending wait rejects with `CLOSED`. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#pending) {
      const one = new Uint8Array(8);
      one[0] = 1;
      socketSys().write(this.#wake.fd, one, 8);
    } else {
      this.#release();
    }
  }

  #release(): void {
    this.#fd.close();
    this.#wake.close();
    this.#poll.free();
  }

  /** `close()`. */
  [Symbol.dispose](): void {
    this.close();
  }
}

function checked(fd: number, syscall: string): number {
  if (fd >= 0) return fd;
  const e = lastErrno();
  throw new TransportError("SYSCALL", classifyErrno(e), `${syscall} failed: errno ${e}`, { errno: e, syscall });
}
