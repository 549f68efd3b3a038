/**
 * eventfd(2) through koffi.
 * @module
 */
import { libc } from "./libc.js";

/** EFD_CLOEXEC. */
export const EFD_CLOEXEC = 0o2000000;
/** EFD_NONBLOCK. */
export const EFD_NONBLOCK = 0o4000;

let fn: ((initval: number, flags: number) => number) | undefined;

/** Create an eventfd; returns the fd or -1 (read errno with lastErrno()). @internal */
export function eventfdSys(initval: number, flags: number): number {
  // SAFETY: glibc prototype `int eventfd(unsigned int, int)`.
  fn ??= libc().func("int eventfd(unsigned int, int)") as unknown as (a: number, b: number) => number;
  return fn(initval, flags);
}
