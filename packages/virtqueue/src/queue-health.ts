/**
 * The broken / usable state of a device-side queue: the first guest error latches and every later
 * call fails with it, until the queue is started again.
 *
 * @module
 */
import { VirtqueueError } from "./errors.js";
import type { VirtqueueErrorCode } from "./errors.js";
import type { GuestErrorSink } from "./segment-cursor.js";

/** Holds a device queue's broken state (docs/virtqueue.md#hostile-guest-bounds). */
export class QueueHealth {
  /** The guest error that broke the queue, or undefined. Cleared by the queue's `start`. */
  brokenBy: VirtqueueError | undefined;
  readonly #onBroken: ((error: VirtqueueError) => void) | undefined;

  /** @param onBroken - called once, synchronously, when a guest error first breaks the queue. */
  constructor(onBroken?: (error: VirtqueueError) => void) {
    this.#onBroken = onBroken;
  }

  /** Marks the queue broken by `err` (if it is not already: the first cause stays) and returns `err` for throwing. */
  latch(err: VirtqueueError): VirtqueueError {
    if (this.brokenBy === undefined) {
      this.brokenBy = err;
      this.#onBroken?.(err);
    }
    return err;
  }

  /** What a call on a stopped or broken queue throws: `BROKEN` (with the cause) or `NOT_STARTED`. */
  unusable(): VirtqueueError {
    if (this.brokenBy !== undefined) {
      return new VirtqueueError("BROKEN", `queue is broken: ${this.brokenBy.message}`, {}, { cause: this.brokenBy });
    }
    return new VirtqueueError("NOT_STARTED", "queue is not started");
  }
}

/**
 * Builds a guest error (`detail.offset` = the descriptor involved, with the bound and the value
 * found when given), records it with `sink` (the queue breaks) and returns it for throwing.
 */
export function guestFault(
  sink: GuestErrorSink,
  code: VirtqueueErrorCode,
  message: string,
  offset: number,
  expected?: number,
  actual?: number,
): VirtqueueError {
  const detail: { offset: number; expected?: number; actual?: number } = { offset };
  if (expected !== undefined) detail.expected = expected;
  if (actual !== undefined) detail.actual = actual;
  return sink.guestError(new VirtqueueError(code, message, detail));
}
