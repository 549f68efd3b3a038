/**
 * `sched_yield(2)` through koffi, for the reactor's spin.
 * @module
 */
import { libc } from "./libc.js";

let yieldFn: (() => number) | undefined;

/**
 * Give the CPU to another runnable thread on this CPU, if there is one (returns at once otherwise).
 * @internal
 */
export function schedYield(): void {
  // SAFETY: no arguments, no memory; always succeeds on Linux.
  yieldFn ??= libc().func("int sched_yield()") as unknown as () => number;
  yieldFn();
}
