/**
 * One fd's edge-triggered readiness, as the reactor reports it: waits for readable, writable and
 * hang-up, with no lost wake-up.
 * @module
 */
import { EPOLL } from "./sys/epoll.js";
import { TransportError } from "./transport-error.js";

/** Epoll bits that wake a reader. */
const READ_EVENTS = EPOLL.IN | EPOLL.RDHUP | EPOLL.HUP | EPOLL.ERR;
/** Epoll bits that wake a writer. */
const WRITE_EVENTS = EPOLL.OUT | EPOLL.HUP | EPOLL.ERR;
/** Epoll bits that mean the peer hung up or the fd failed. */
const HANGUP_EVENTS = EPOLL.RDHUP | EPOLL.HUP | EPOLL.ERR;

interface Waiter {
  resolve(): void;
  reject(err: TransportError): void;
}

/**
 * @internal What a {@link Watch} needs of its reactor: a count of parked waits (the reactor polls
 * while any is parked) and deregistration.
 */
export interface WatchOwner {
  /** A wait of `w` parked (+1) or ended (-1). */
  parked(delta: number, w: Watch): void;
  /** Remove `w` from the epoll set. */
  deregister(w: Watch): void;
}

/**
 * Readiness of one fd, registered edge-triggered with its `Reactor`. Obtained from
 * `Reactor.watch`; the owner of the fd calls {@link Watch.close} **before** closing the fd.
 *
 * Use: try the non-blocking call first; on EAGAIN `await watch.readable()` (or `writable()`) and try
 * again. An edge that arrived since the last wait makes the next wait resolve at once, so no wake-up
 * is ever lost; a spurious wake-up only costs one more EAGAIN. At most one reader and one writer may
 * wait at a time.
 */
export class Watch {
  readonly #reactor: WatchOwner;
  readonly #fd: number;
  readonly #label: string;
  /** @internal key of this watch in its reactor (the epoll `data` field). */
  readonly token: number;
  #readEdge = false;
  #writeEdge = false;
  #reader: Waiter | undefined;
  /** The parked reader's own non-blocking attempt (see {@link Watch.readable}). */
  #readProbe: (() => boolean) | undefined;
  #writer: Waiter | undefined;
  #closed = false;
  #hungUp = false;
  #hangupWaiters: (() => void)[] = [];

  /** @internal use `Reactor.watch`. */
  constructor(reactor: WatchOwner, fd: number, token: number, label: string) {
    this.#reactor = reactor;
    this.#fd = fd;
    this.#label = label;
    this.token = token;
  }

  /** The watched fd (borrowed). */
  get fd(): number {
    return this.#fd;
  }

  /**
   * True once the reactor reported a hang-up or an error for the fd (EPOLLRDHUP, EPOLLHUP,
   * EPOLLERR). A reader that knows it drained the fd still reads once more when this is set: no
   * further edge will come to wake it for the end of file.
   */
  get hungUp(): boolean {
    return this.#hungUp;
  }

  /**
   * Resolves when the fd may be readable (data, EOF, hang-up or error).
   * @param probe - the reader's own non-blocking attempt (e.g. a `recvmsg` into its buffer),
   *   returning true once the reader can go on (it got what it waited for, or an error it will
   *   report); it must not throw. With a probe the wait resolves only when the probe says so: the reactor calls it
   *   for every readiness edge (so an edge whose data an earlier probe already took costs one
   *   failed read, not a wake-up), and, while this is the only wait, instead of polling the epoll
   *   set as it spins (the read that finds the data is the one that takes it).
   * @throws TransportError `CLOSED` (rejects) when the watch is closed while waiting; `BUSY` when
   *   another read wait is already pending.
   */
  readable(probe?: () => boolean): Promise<void> {
    if (this.#readEdge && !this.#closed) {
      this.#readEdge = false;
      // An edge that came meanwhile: with a probe, the wait ends only if the probe finds something.
      if (probe === undefined || probe()) return Promise.resolve();
    }
    this.#readProbe = probe;
    return this.#park("read");
  }

  /** @internal a reader with a probe is parked, and no writer: the reactor may spin on the probe alone. */
  get probing(): boolean {
    return this.#readProbe !== undefined && this.#reader !== undefined && this.#writer === undefined;
  }

  /** @internal run the parked reader's probe; resolve the reader when it succeeds. */
  probeRead(): boolean {
    const r = this.#reader;
    const probe = this.#readProbe;
    if (r === undefined || probe === undefined || !probe()) return false;
    this.#reader = undefined;
    this.#readProbe = undefined;
    this.#reactor.parked(-1, this);
    r.resolve();
    return true;
  }

  /**
   * Resolves when the fd may be writable (buffer space, hang-up or error).
   * @throws TransportError `CLOSED` (rejects) when the watch is closed while waiting; `BUSY` when
   *   another write wait is already pending.
   */
  writable(): Promise<void> {
    if (this.#writeEdge && !this.#closed) {
      this.#writeEdge = false;
      return Promise.resolve();
    }
    return this.#park("write");
  }

  /**
   * Resolves once the peer hung up or the fd reported an error (EPOLLRDHUP, EPOLLHUP, EPOLLERR),
   * without consuming anything and independently of the read and write waits; never, when the watch
   * is closed first. Does not keep the reactor waiting by itself: the hang-up is seen the next time
   * the reactor polls for any fd.
   */
  hangup(): Promise<void> {
    if (this.#hungUp) return Promise.resolve();
    return new Promise<void>((resolve) => this.#hangupWaiters.push(resolve));
  }

  #park(dir: "read" | "write"): Promise<void> {
    if (this.#closed) return Promise.reject(new TransportError("CLOSED", "broken", `${this.#label} closed`));
    if ((dir === "read" ? this.#reader : this.#writer) !== undefined) {
      return Promise.reject(new TransportError("BUSY", "retry", `${this.#label}: a ${dir} wait is already pending`));
    }
    return new Promise<void>((resolve, reject) => {
      const w: Waiter = { resolve, reject };
      if (dir === "read") this.#reader = w;
      else this.#writer = w;
      this.#reactor.parked(1, this);
    });
  }

  /** @internal called by the reactor with the epoll event bits for this fd. */
  fire(events: number): void {
    if ((events & HANGUP_EVENTS) !== 0 && !this.#hungUp) {
      this.#hungUp = true;
      for (const resolve of this.#hangupWaiters.splice(0)) resolve();
    }
    if ((events & READ_EVENTS) !== 0) {
      const r = this.#reader;
      if (r === undefined) this.#readEdge = true;
      else if (this.#readProbe !== undefined) this.probeRead();
      else {
        this.#reader = undefined;
        this.#reactor.parked(-1, this);
        r.resolve();
      }
    }
    if ((events & WRITE_EVENTS) !== 0) {
      const w = this.#writer;
      if (w) {
        this.#writer = undefined;
        this.#reactor.parked(-1, this);
        w.resolve();
      } else this.#writeEdge = true;
    }
  }

  /**
   * Deregister the fd and reject pending waits with `CLOSED`. Call before closing the fd. Idempotent.
   */
  close(): void {
    this.abort(new TransportError("CLOSED", "broken", `${this.#label} closed while waiting`));
  }

  /** @internal deregister and reject pending waits with `err`. */
  abort(err: TransportError): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#reactor.deregister(this);
    for (const w of [this.#reader, this.#writer]) {
      if (w) {
        this.#reactor.parked(-1, this);
        w.reject(err);
      }
    }
    this.#reader = undefined;
    this.#readProbe = undefined;
    this.#writer = undefined;
  }
}
