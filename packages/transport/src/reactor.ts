import { TransportError } from "./transport-error.js";
import { Watch } from "./watch.js";
import { classifyErrno, Errno } from "./sys/errno.js";
import { describeErrno } from "./errno-text.js";
import { EPOLL, EPOLL_CLOEXEC, EPOLL_CTL, EPOLL_DATA_OFFSET, EPOLL_EVENT_SIZE, epollSys, HAS_LOOP_POLL, loopPoll, type LoopPoll } from "./sys/epoll.js";
import { eventfdSys, EFD_CLOEXEC, EFD_NONBLOCK } from "./sys/eventfd.js";
import { lastErrno } from "./sys/libc.js";
import { SpinYield } from "./spin-yield.js";
import { warmUpSys } from "./sys/warm-up.js";
import { nativeAlloc, socketSys, type NativeBlock } from "./sys/socket.js";

/** Events delivered per `epoll_wait`. */
const MAX_EVENTS = 64;
/** Token of the reactor's own wake-up eventfd. */
const WAKE_TOKEN = 0;
/** Options of {@link Reactor}. */
export interface ReactorOptions {
  /**
   * The longest time in microseconds a wait polls without blocking before it leaves the wait to the
   * worker thread (Bun) or to the event loop's own watch of the epoll fd (Node) (default 500, or
   * `VHOSTKIT_SPIN_US`; 0 disables spinning). The budget of each wait adapts between
   * {@link SPIN_FLOOR_MICROS} and this maximum, as QEMU's adaptive polling does: it doubles when an
   * event arrives soon after a spin gave up, and halves when a wait blocks for longer than the
   * maximum, so busy peers are caught without a thread hop or a sleep and idle ones cost almost
   * nothing.
   */
  readonly spinMicros?: number;
}

/** Longest stretch one spin holds the JavaScript thread before letting other work run (ms). */
const SPIN_SLICE_MS = 0.02;
/** Longest stretch a spin on a lone receive's own reads goes without polling the epoll set (ms). */
const SET_POLL_MS = 1;

/** The smallest spin budget of an adaptive reactor, in microseconds (also where it starts). */
export const SPIN_FLOOR_MICROS = 50;

function defaultSpinMicros(): number {
  const env = Number(process.env["VHOSTKIT_SPIN_US"]);
  return Number.isFinite(env) && process.env["VHOSTKIT_SPIN_US"] !== undefined ? env : 500;
}

/**
 * One edge-triggered epoll instance that waits for every registered fd, so the JavaScript thread
 * never blocks in accept/recvmsg/read. A wait first spins (adaptive budget, in slices of at most
 * 20 µs with the event loop running between them; {@link ReactorOptions.spinMicros}). Then, under
 * Node, libuv watches the epoll fd itself (`koffi.node.poll`, no thread); under Bun, where that
 * aborts the process, **one** koffi worker thread blocks in `epoll_wait.async`.
 *
 * Why this design (docs/performance.md#wait-mechanism-per-runtime): one blocked call per socket or eventfd would hold one thread
 * each (in Node one of libuv's 4 pool threads) and deadlock a back-end with a few queues; one epoll
 * set needs at most one blocked call for any number of fds and costs no CPU while idle.
 *
 * The worker call is outstanding only while someone waits; when the last waiter goes away the
 * reactor signals its wake-up eventfd so the thread returns and the process can exit.
 */
export class Reactor {
  static #shared: Reactor | undefined;
  readonly #epfd: number;
  readonly #wakeFd: number;
  readonly #events: NativeBlock;
  /** The `epoll_event` passed to `epoll_ctl` (one native buffer, reused). */
  readonly #ctlEvent: NativeBlock;
  readonly #watches = new Map<number, Watch>();
  #nextToken = 1;
  #parked = 0;
  #armed = false;
  #spinScheduled = false;
  /** The only parked wait's watch, when there is exactly one and it is known. */
  #lone: Watch | undefined;
  #failures = 0;
  #resolvedInSpin = 0;
  /** Waits ended (served or aborted), and those served while spinning and by the blocking wait. */
  #ended = 0;
  #servedSpinning = 0;
  #servedBlocked = 0;
  #closed = false;
  #released = false;
  #onReleased: () => void = () => undefined;
  readonly #releasedPromise = new Promise<void>((resolve) => {
    this.#onReleased = resolve;
  });
  readonly #loop: LoopPoll | undefined;
  /** Largest and smallest spin budget (ms; max 0 = no spinning) and the current one. */
  readonly #spinMaxMs: number;
  readonly #spinMinMs: number;
  #spinMs: number;
  /** When the wait that ended in the worker started spinning (performance.now() ms), or -1. */
  #waitStart = -1;
  /** When the current spin started (it may span several slices), or -1. */
  #spinStart = -1;
  /** When the epoll set was last polled (performance.now() ms; see #spinThenArm). */
  #setPolledAt = 0;
  /** `sched_yield` between polls (spin-yield.ts). */
  readonly #yield = new SpinYield();
  #stopScheduled = false;

  /**
   * Create a reactor (most code uses {@link Reactor.shared}).
   * @throws TransportError `SYSCALL` when epoll_create1 or eventfd fails.
   */
  constructor(options: ReactorOptions = {}) {
    const ep = epollSys();
    const epfd = ep.epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) throw sysError("epoll_create1");
    const wake = eventfdSys(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wake < 0) {
      const err = sysError("eventfd");
      socketSys().close(epfd);
      throw err;
    }
    this.#epfd = epfd;
    this.#wakeFd = wake;
    this.#events = nativeAlloc(EPOLL_EVENT_SIZE * MAX_EVENTS);
    this.#ctlEvent = nativeAlloc(16);
    // Level-triggered: stays readable until drained, so a wake can never be missed.
    this.#control(EPOLL_CTL.ADD, wake, EPOLL.IN, WAKE_TOKEN);
    this.#loop = HAS_LOOP_POLL ? loopPoll(epfd, () => this.#collect()) : undefined;
    this.#spinMaxMs = Math.max(0, options.spinMicros ?? defaultSpinMicros()) / 1000;
    this.#spinMinMs = Math.min(this.#spinMaxMs, SPIN_FLOOR_MICROS / 1000);
    this.#spinMs = this.#spinMinMs;
  }

  /**
   * The process-wide reactor, created on first use (after `warmUpSys` of `@vhostkit/transport/sys`
   * ran). It also wakes its worker thread when the process exits, because Node cannot finish exiting
   * while a worker thread is blocked in a native call.
   */
  static shared(): Reactor {
    if (Reactor.#shared === undefined) {
      // The process opens its first connection: declare and run the libc calls once now, not in
      // the first request (docs/performance.md#first-request). VHOSTKIT_WARM_UP=0 skips it (to
      // measure what it saves).
      if (process.env["VHOSTKIT_WARM_UP"] !== "0") warmUpSys();
      const r = new Reactor();
      Reactor.#shared = r;
      process.once("exit", () => r.#wake());
    }
    return Reactor.#shared;
  }

  /**
   * Register `fd` (borrowed; any pollable fd: socket, eventfd, pipe) for read and write readiness.
   * @param label - names the owner in errors, e.g. `"endpoint"`: waits cut short by a close reject
   *   with `CLOSED` "<label> closed while waiting".
   * @throws TransportError `SYSCALL` when epoll_ctl refuses it (e.g. EPERM for a regular file, EBADF).
   */
  watch(fd: number, label = `fd ${fd}`): Watch {
    if (this.#closed) throw new TransportError("CLOSED", "broken", "reactor closed");
    const token = this.#nextToken++;
    const w = new Watch(this, fd, token, label);
    this.#control(EPOLL_CTL.ADD, fd, EPOLL.IN | EPOLL.OUT | EPOLL.RDHUP | EPOLL.ET, token);
    this.#watches.set(token, w);
    return w;
  }

  /**
   * Close a private reactor: every watch is aborted with `CLOSED`, then the epoll fd, the wake-up
   * eventfd and the native buffers are released (after the worker call returns, if one is blocked).
   * The {@link Reactor.shared} reactor lives as long as the process and must not be closed.
   * Idempotent.
   * @returns a promise that resolves once every fd and buffer of the reactor is released.
   */
  close(): Promise<void> {
    if (this.#closed) return this.#releasedPromise;
    this.#closed = true;
    const err = new TransportError("CLOSED", "broken", "reactor closed");
    for (const w of [...this.#watches.values()]) w.abort(err);
    this.#loop?.stop();
    if (this.#armed && !this.#loop) this.#wake();
    else this.#release();
    return this.#releasedPromise;
  }

  #release(): void {
    if (this.#released) return;
    this.#released = true;
    const s = socketSys();
    s.close(this.#epfd);
    s.close(this.#wakeFd);
    this.#events.free();
    this.#ctlEvent.free();
    this.#onReleased();
  }

  /** Number of fds currently registered (for tests and diagnostics). */
  get size(): number {
    return this.#watches.size;
  }

  /** @internal deregister a watch (its fd is still open). */
  deregister(w: Watch): void {
    if (!this.#watches.delete(w.token)) return;
    // SAFETY: the owner calls this before closing the fd, so DEL names the registered file. A failure
    // (the fd was already closed, which drops the registration anyway) needs no handling.
    epollSys().epoll_ctl(this.#epfd, EPOLL_CTL.DEL, w.fd, null);
  }

  /** @internal a waiter of `w` parked (+1) or left (-1). */
  parked(delta: number, w: Watch): void {
    this.#parked += delta;
    // The only wait, when there is one and it is known (after an end, whichever is left is not).
    this.#lone = delta > 0 && this.#parked === 1 ? w : undefined;
    if (delta < 0) {
      this.#resolvedInSpin++;
      this.#ended++;
    }
    if (this.#parked > 0) this.#arm();
    else if (this.#armed) this.#wake();
  }

  #control(op: number, fd: number, events: number, token: number): void {
    const v = this.#ctlEvent.view;
    v.setUint32(0, events >>> 0, true);
    // Tokens are small integers: the low half of epoll_data carries them, the high half stays 0.
    v.setUint32(EPOLL_DATA_OFFSET, token, true);
    v.setUint32(EPOLL_DATA_OFFSET + 4, 0, true);
    // SAFETY: #ctlEvent is a native epoll_event buffer of at least EPOLL_EVENT_SIZE bytes.
    if (epollSys().epoll_ctl(this.#epfd, op, fd, this.#ctlEvent.ptr) !== 0) throw sysError("epoll_ctl");
  }

  #arm(): void {
    if (this.#closed || this.#armed) return;
    if (this.#spinMaxMs > 0) {
      // Spin only once the JS thread has nothing else to do (setImmediate runs after microtasks).
      if (!this.#spinScheduled) this.#spinSoon();
      return;
    }
    this.#armBlocking();
  }

  /**
   * Poll the epoll set without blocking for up to the current spin budget (in slices), stopping as
   * soon as a waiter is served; only then park in the worker thread (Bun) or leave the wait to
   * libuv's watch (Node). A worker hand-off or a sleeping loop's wake-up costs tens of microseconds
   * on a small VM, while a peer that answers at once is caught here with no thread hop and no sleep
   * (the same trade as Linux's SO_BUSY_POLL). Idle fds still cost nothing: after the budget the
   * thread sleeps.
   */
  #spinThenArm(): void {
    this.#spinScheduled = false;
    if (this.#parked === 0 || this.#armed || this.#closed) {
      this.#spinStart = -1;
      return;
    }
    // performance.now() is a double: no BigInt allocation per round (process.hrtime.bigint() would be).
    const now = performance.now();
    if (this.#spinStart < 0) {
      this.#spinStart = now;
      // A new spin: an earlier wait that fell back to libuv (Node) no longer says how long a peer takes.
      this.#waitStart = -1;
    }
    const deadline = this.#spinStart + this.#spinMs;
    // One slice at a time: other JavaScript work queued meanwhile (timers, immediates, I/O
    // callbacks) runs between slices instead of waiting for the whole budget.
    const sliceEnd = Math.min(deadline, now + SPIN_SLICE_MS);
    this.#resolvedInSpin = 0;
    let t = now;
    do {
      const ended = this.#ended;
      // The only wait is a reader with a probe (an endpoint's receive): its own non-blocking read
      // polls, and the read that finds the message is the one that takes it (no epoll_wait first).
      // The set is still polled every millisecond, so that edges nobody waits for (a hang-up
      // another endpoint's `hangup()` waits for) are seen while one connection keeps it busy.
      const lone = this.#lone;
      if (lone?.probing === true && t - this.#setPolledAt < SET_POLL_MS) lone.probeRead();
      else this.#poll();
      const served = this.#ended - ended;
      this.#servedSpinning += served;
      if (served === 0) this.#yield.missed();
      if (this.#parked === 0) {
        this.#spinStart = -1;
        return;
      }
      if (this.#resolvedInSpin > 0) {
        // Some waiters were served, others are still parked: spin again after the served ones ran
        // (their peers often answer at once), rather than forgetting the rest — a waiter nobody
        // re-parks behind would never wake. The next round starts a fresh budget.
        this.#spinStart = -1;
        this.#spinSoon();
        return;
      }
      t = performance.now();
    } while (t < sliceEnd);
    if (sliceEnd < deadline) {
      this.#spinSoon();
      return;
    }
    // The budget is spent and nobody was served. Collect the edges whose data a probe already took
    // (they would wake the blocking wait at once), then hand the wait over.
    const ended = this.#ended;
    this.#poll();
    if (this.#ended > ended) {
      this.#servedSpinning += this.#ended - ended;
      this.#spinStart = -1;
      if (this.#parked > 0) this.#spinSoon();
      return;
    }
    this.#waitStart = this.#spinStart;
    this.#spinStart = -1;
    this.#armBlocking();
  }

  /** One non-blocking poll of the epoll set, its events delivered. */
  #poll(): void {
    this.#setPolledAt = performance.now();
    // SAFETY: timeout 0: a non-blocking poll of the epoll set.
    const n = epollSys().epoll_wait(this.#epfd, this.#events.ptr, MAX_EVENTS, 0);
    if (n > 0) this.#dispatchEvents(n);
  }

  /**
   * Leave the wait to the blocking mechanism: libuv's watch of the epoll fd (Node) or the worker
   * in `epoll_wait` (Bun). Under Node the watch is off while spinning: the edges of data a probe
   * already took would make the epoll fd readable in every loop turn.
   */
  #armBlocking(): void {
    if (this.#loop) {
      if (this.#armed) return;
      this.#armed = true;
      this.#loop.start();
    } else this.#armAsync();
  }

  /** Node: stop libuv's watch so the next wait spins first. */
  #disarmLoop(): void {
    if (!this.#armed || this.#spinMaxMs === 0) return;
    this.#armed = false;
    this.#loop?.stop();
  }

  /**
   * Spin once the JavaScript thread has nothing else to do: in the next loop turn. Not in a
   * microtask of the current turn, although that would save a loop turn per message: a spin there
   * runs before the served waiter's other continuations and the runtime's I/O callbacks, and
   * measured 2–3x slower where one process waits on two things (MEM_READ 64 KiB cross-process
   * 5.3 → 2.2 GB/s, the RAM blk device's QD1 CPU per request 9 → 29 µs; docs/performance.md).
   */
  #spinSoon(): void {
    this.#spinScheduled = true;
    setImmediate(this.#spinFromLoop);
  }

  readonly #spinFromLoop = (): void => this.#spinThenArm();

  /**
   * Adapt the spin budget to a wait that gave up spinning and ended in the worker after `waitedMs`
   * in all: an event that came within the maximum means a longer spin would have caught it (double
   * the budget); a longer wait means the peer is idle (halve it).
   */
  #adapt(waitedMs: number): void {
    if (waitedMs <= this.#spinMaxMs) this.#spinMs = Math.min(this.#spinMaxMs, this.#spinMs * 2);
    else this.#spinMs = Math.max(this.#spinMinMs, this.#spinMs / 2);
  }

  /** The current spin budget in microseconds (0 when spinning is off). */
  get spinBudgetMicros(): number {
    return this.#spinMaxMs === 0 ? 0 : Math.round(this.#spinMs * 1000);
  }

  /**
   * How many waits were served while still spinning (no sleep, no thread hop) and how many by the
   * blocking wait after the spin (the worker under Bun, libuv's watch of the epoll fd under Node).
   * For tests and diagnostics.
   */
  get served(): { readonly spinning: number; readonly blocked: number } {
    return { spinning: this.#servedSpinning, blocked: this.#servedBlocked };
  }

  #armAsync(): void {
    if (this.#armed) return;
    this.#armed = true;
    // SAFETY: #events is native memory owned by this reactor for the life of the process; the worker
    // writes it only until the callback, which runs on the JS thread before it is read.
    epollSys().epoll_wait.async(this.#epfd, this.#events.ptr, MAX_EVENTS, -1, (err, n) => this.#dispatch(err, n));
  }

  #dispatch(err: unknown, n: number): void {
    this.#armed = false;
    if (this.#closed) {
      this.#release();
      return;
    }
    if (err !== null && err !== undefined) n = -1;
    if (n < 0) {
      // errno lives on the worker thread and cannot be read here; EINTR is the only expected cause.
      if (++this.#failures > 1000) this.#failAll();
      else if (this.#parked > 0) this.#arm();
      return;
    }
    this.#failures = 0;
    const ended = this.#ended;
    const watched = this.#dispatchEvents(n);
    if (this.#settle(this.#ended - ended, watched) && this.#parked > 0) this.#armAsync();
    else if (this.#parked > 0) this.#arm();
  }

  /**
   * After the blocking wait delivered `watched` events of watched fds that ended `served` waits:
   * only a served wait says how long the peer took (adapt the budget to it). Edges that served
   * nobody (data a probe already took, a writable edge nobody waits for) leave the wait blocking.
   * @returns true when the wait goes on blocking.
   */
  #settle(served: number, watched: number): boolean {
    this.#servedBlocked += served;
    if (served === 0 && watched > 0) return true;
    if (served > 0 && this.#waitStart >= 0) this.#adapt(performance.now() - this.#waitStart);
    this.#waitStart = -1;
    return false;
  }

  /** Deliver `n` collected events; returns how many were for watched fds (not the wake-up). */
  #dispatchEvents(n: number): number {
    const v = this.#events.view;
    let watched = 0;
    for (let i = 0; i < n; i++) {
      const off = i * EPOLL_EVENT_SIZE;
      const events = v.getUint32(off, true);
      const token = v.getUint32(off + EPOLL_DATA_OFFSET, true);
      if (token === WAKE_TOKEN) this.#drainWake();
      else {
        watched++;
        this.#watches.get(token)?.fire(events);
      }
    }
    return watched;
  }

  /** Node: the epoll fd became readable in libuv's loop; collect events without blocking. */
  #collect(): void {
    // SAFETY: timeout 0, so this synchronous call never blocks the JS thread.
    const n = epollSys().epoll_wait(this.#epfd, this.#events.ptr, MAX_EVENTS, 0);
    const ended = this.#ended;
    const watched = this.#dispatchEvents(n < 0 ? 0 : n);
    // A wait the spin gave up on ends here: its length adapts the budget, as the worker's does under Bun.
    // Once someone was served, the watch stops at once: the next waits (parked again in a few
    // microtasks) spin first.
    if (!this.#settle(this.#ended - ended, watched)) this.#disarmLoop();
    if (this.#parked === 0) {
      if (this.#armed) this.#stopWhenIdle();
    } else if (!this.#armed) this.#arm();
  }

  /**
   * Node: stop the loop watch once nobody waits, but only after the current loop turn, because the
   * waiters just resolved usually park again a few microtasks later.
   */
  #stopWhenIdle(): void {
    if (this.#stopScheduled) return;
    this.#stopScheduled = true;
    setImmediate(() => {
      this.#stopScheduled = false;
      if (this.#closed) this.#release();
      else if (this.#parked === 0 && this.#armed) {
        this.#armed = false;
        this.#loop?.stop();
      }
    });
  }

  #wake(): void {
    if (this.#loop) {
      // Nothing blocks in a native call under Node: the watch only has to stop holding the loop.
      this.#stopWhenIdle();
      return;
    }
    const one = new Uint8Array(8);
    one[0] = 1;
    // SAFETY: an eventfd write of one host-order u64; EAGAIN (counter saturated) still leaves it readable.
    socketSys().write(this.#wakeFd, one, 8);
  }

  #drainWake(): void {
    const b = new Uint8Array(8);
    // SAFETY: non-blocking eventfd read of 8 bytes; EAGAIN means already drained.
    socketSys().read(this.#wakeFd, b, 8);
  }

  #failAll(): void {
    const err = new TransportError("SYSCALL", "broken", "epoll_wait keeps failing", { errno: Errno.EBADF, syscall: "epoll_wait" });
    for (const w of [...this.#watches.values()]) w.abort(err);
  }
}

function sysError(syscall: string): TransportError {
  const e = lastErrno();
  return new TransportError("SYSCALL", classifyErrno(e), `${syscall}: ${describeErrno(e)}`, { errno: e, syscall });
}
