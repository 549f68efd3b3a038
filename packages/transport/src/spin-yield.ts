/**
 * How the reactor's spin lets other threads run between its polls.
 * @module
 */
import { schedYield } from "./sys/sched.js";

/** `VHOSTKIT_SPIN_YIELD=0` spins without `sched_yield` (to measure what it costs or saves). */
const SPIN_YIELD = process.env["VHOSTKIT_SPIN_YIELD"] !== "0";
/** Polls per `sched_yield` while yields find nobody else wanting the CPU. */
const UNCONTENDED_YIELD_EVERY = 8;
/** A `sched_yield` longer than this (ms) ran another thread: the CPU is contended. */
const CONTENDED_YIELD_MS = 0.005;

/**
 * @internal A polite spin: between polls, let any other runnable thread on this CPU run (the
 * peer's, or the runtime's JIT and GC helpers). On a 2-vCPU machine a spinner that never yields
 * holds a CPU the peer needs (5–20× slower round trips when they share one). A `sched_yield` that
 * came back at once found nobody waiting for the CPU: then only every 8th poll yields (the rest
 * poll at once, as a C busy-poll does) until a yield takes longer again.
 */
export class SpinYield {
  /** The last `sched_yield` ran another thread. */
  #contended = true;
  /** Polls since the last `sched_yield`. */
  #since = 0;

  /** A poll found nothing: yield the CPU when it is due. */
  missed(): void {
    if (!SPIN_YIELD || (!this.#contended && ++this.#since < UNCONTENDED_YIELD_EVERY)) return;
    this.#since = 0;
    const t = performance.now();
    schedYield();
    this.#contended = performance.now() - t > CONTENDED_YIELD_MS;
  }
}
