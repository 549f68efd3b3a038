/** Test helper: one turn of the event loop. */

/**
 * One turn of the event loop: I/O callbacks and the reactor's spin slice run. Used to let a reader
 * wake to part of a frame before the rest is written, never to wait for something to happen.
 */
export function turn(): Promise<void> {
  return new Promise((r) => setImmediate(() => setImmediate(r)));
}
