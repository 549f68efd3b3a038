/**
 * Ring polling (docs/performance.md#ring-polling): after a handler run the ring runner may watch the
 * available ring itself for a short while, notifications still suppressed, before it asks the
 * driver for a kick and sleeps on the kick eventfd — as QEMU's adaptive polling of a virtqueue does.
 * A driver that submits again within the window then costs no kick (no eventfd write on its side,
 * no epoll wake-up, eventfd read or reactor hop on this one): the request is seen by a memory load.
 * Off by default: on the 2-vCPU VM, shared with other jobs, the CPU a poll holds was worth more to
 * the driver than the kicks it saved (docs/performance.md#ring-polling).
 * @module
 */
import type { DeviceQueue } from "@vhostkit/virtqueue";

/** Default longest polling window after a handler run, in microseconds: 0, off (`VHOSTKIT_RING_POLL_US` sets it). */
export const DEFAULT_RING_POLL_MICROS = 0;

/** The longest polling window in microseconds: `VHOSTKIT_RING_POLL_US` when set to a number >= 0, else {@link DEFAULT_RING_POLL_MICROS}. */
export function defaultRingPollMicros(): number {
  const raw = process.env["VHOSTKIT_RING_POLL_US"];
  const v = raw === undefined || raw.trim() === "" ? Number.NaN : Number(raw);
  return Number.isFinite(v) && v >= 0 ? v : DEFAULT_RING_POLL_MICROS;
}

/**
 * The next polling window of a ring whose last poll (of `current` µs) found nothing and whose next
 * kick came `waitedMicros` after that poll began, as QEMU adapts its polling: doubled (at least
 * `max / 8`, at most `max`) when a window up to `max` would have caught it, halved (down to `max / 8`)
 * when not, so a driver that answers within `max` is caught without a kick and a slow or idle one
 * costs little CPU per run. A poll that finds work keeps its window.
 */
export function adaptPollMicros(current: number, waitedMicros: number, max: number): number {
  return waitedMicros <= max ? Math.min(max, Math.max(max / 8, current * 2)) : Math.max(max / 8, current / 2);
}

/** Longest stretch one poll holds the JavaScript thread before letting other work run (ms). */
const POLL_SLICE_MS = 0.02;

/**
 * Watches `queue`'s available ring for up to `micros` µs, in slices of at most 20 µs with the event
 * loop let run between them (other rings, the front-end's messages). Stops early when `keepOn`
 * returns false (the ring stopped, broke or is draining).
 * @returns true when chains became available (pop them before enabling notifications), false when
 *   the window passed or `keepOn` said stop.
 * @throws what `queue.hasAvailable()` throws: `NOT_STARTED`, `BROKEN`, or the guest error `AVAIL_OVERRUN`.
 */
export async function pollRing(queue: DeviceQueue, micros: number, keepOn: () => boolean): Promise<boolean> {
  if (micros <= 0) return false;
  const start = performance.now();
  const end = start + micros / 1000;
  for (;;) {
    let now = performance.now();
    const slice = Math.min(end, now + POLL_SLICE_MS);
    do {
      if (queue.hasAvailable()) return true;
      now = performance.now();
    } while (now < slice);
    if (now >= end) return false;
    await new Promise<void>((resolve) => setImmediate(resolve));
    if (!keepOn()) return false;
  }
}
