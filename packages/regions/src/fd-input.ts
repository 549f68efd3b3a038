/**
 * Fd ownership at the API boundary.
 * @module
 */
import { closeFd } from "@vhostkit/transport/sys";

/**
 * A received file descriptor handed to `@vhostkit/regions`. Either a raw fd number, whose ownership
 * passes to the callee, or an owner object such as `OwnedFd` from `@vhostkit/transport`, whose
 * `transfer()` is called exactly once so the callee becomes the only owner. Either way the callee
 * closes the fd exactly once (on rejection immediately, otherwise when the region or mapping goes
 * away); the caller must not close it.
 */
export type FdInput = number | { transfer(): number };

/**
 * Takes ownership of `input`: the returned raw fd is now the caller's to close.
 * Returns -1 for a negative raw fd or an owner that was already closed.
 * @internal
 */
export function takeFd(input: FdInput): number {
  if (typeof input === "number") return Number.isInteger(input) && input >= 0 ? input : -1;
  try {
    return input.transfer();
  } catch {
    return -1;
  }
}

/**
 * Closes a raw fd this package owns; -1 is ignored.
 * @internal
 */
export function closeOwned(fd: number): void {
  // SAFETY: callers pass only fds they own and forget them right after this call.
  if (fd >= 0) closeFd(fd);
}
