/**
 * The timeouts of a {@link DriverQueue}'s requests: the set of requests in flight and one timer,
 * armed for the earliest deadline it knows of.
 * @module
 */

/** A request with a deadline (`performance.now()` ms) and the timeout it was set from. @internal */
export interface Timed {
  deadline: number;
  readonly timeoutMs: number;
}

/**
 * Requests not yet completed and the one timer that fails the first late one. The timer is off
 * whenever nothing is pending, so it never keeps the process alive. @internal
 */
export class Deadlines<P extends Timed> {
  /** Every request not yet completed, in submission order. */
  readonly pending = new Set<P>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #timerAt = Infinity;
  readonly #onLate: (p: P) => void;
  readonly #paused: () => boolean;

  /** `onLate(p)` runs once the first request is past its deadline (not while `paused()`). */
  constructor(onLate: (p: P) => void, paused: () => boolean) {
    this.#onLate = onLate;
    this.#paused = paused;
  }

  /** Tracks `p` (arms the timer when its deadline is the earliest). */
  track(p: P): void {
    this.pending.add(p);
    if (p.deadline < this.#timerAt) this.#arm(p.deadline);
  }

  /** `p` completed or was dropped. */
  untrack(p: P): void {
    this.pending.delete(p);
    if (this.pending.size === 0) this.disarm();
  }

  /** Stops the timer (until a request is tracked or {@link Deadlines.restart}). */
  disarm(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerAt = Infinity;
  }

  /** Every deadline counts from now again (the ring restarted on a new back-end). */
  restart(): void {
    const now = performance.now();
    let first = Infinity;
    for (const p of this.pending) {
      p.deadline = now + p.timeoutMs;
      first = Math.min(first, p.deadline);
    }
    if (first < Infinity) this.#arm(first);
  }

  /** Stops the timer and returns (and forgets) every pending request. */
  drain(): P[] {
    this.disarm();
    const out = [...this.pending];
    this.pending.clear();
    return out;
  }

  #arm(at: number): void {
    this.disarm();
    this.#timerAt = at;
    this.#timer = setTimeout(() => this.#fire(), Math.max(0, at - performance.now()));
  }

  /** The earliest known deadline came: report a late request, else re-arm. */
  #fire(): void {
    this.disarm();
    if (this.#paused()) return;
    const now = performance.now();
    let next = Infinity;
    for (const p of this.pending) {
      if (p.deadline <= now) {
        this.#onLate(p);
        return;
      }
      if (p.deadline < next) next = p.deadline;
    }
    if (next < Infinity) this.#arm(next);
  }
}
