import { socketSys } from "./sys/socket.js";

/**
 * A file descriptor with one owner: closed exactly once, by {@link OwnedFd.close}, by
 * `Symbol.dispose` (`using`), or handed on with {@link OwnedFd.transfer}.
 */
export class OwnedFd {
  #fd: number;

  /** Takes ownership of `fd` (a non-negative descriptor). */
  constructor(fd: number) {
    this.#fd = fd;
  }

  /** The raw descriptor; -1 after close/transfer. Borrowed: do not close it yourself. */
  get fd(): number {
    return this.#fd;
  }

  /** True once closed or transferred. */
  get closed(): boolean {
    return this.#fd < 0;
  }

  /** Close the fd; later calls do nothing. */
  close(): void {
    const fd = this.#fd;
    if (fd < 0) return;
    this.#fd = -1;
    // SAFETY: this object is the fd's only owner and forgets it before closing.
    socketSys().close(fd);
  }

  /** Give up ownership: returns the raw fd, which the caller must now close. @throws RangeError when already closed. */
  transfer(): number {
    const fd = this.#fd;
    if (fd < 0) throw new RangeError("fd already closed or transferred");
    this.#fd = -1;
    return fd;
  }

  /** Same as {@link OwnedFd.close}. */
  [Symbol.dispose](): void {
    this.close();
  }
}
