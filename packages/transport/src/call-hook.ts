/**
 * Calling the hooks a caller hands to a protocol loop.
 * @module
 */

/**
 * Calls `hook` with `args` when it is set and discards whatever it throws, or, when it returns a
 * promise, whatever that promise rejects with. A caller's listener, trace sink or callback must
 * never break the loop that calls it (a connection, a server, a back-end channel): the loop has no
 * one to report the hook's failure to but the hook itself.
 * @param hook - the caller's function, or `undefined` when none was given.
 * @param args - what the hook is called with.
 */
export function callHook<A extends unknown[]>(hook: ((...args: A) => unknown) | undefined, ...args: A): void {
  if (hook === undefined) return;
  try {
    const result = hook(...args);
    if (result instanceof Promise) result.catch(() => undefined);
  } catch {
    // Discarded on purpose: see above.
  }
}
