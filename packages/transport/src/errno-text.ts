/**
 * errno values as text a person can act on: `no such file or directory (ENOENT)` instead of
 * `errno 2`, from the one errno table (`sys/errno.ts`); both the system calls of this package and a
 * FUSE server's negative `error` field use it.
 * @module
 */

import { errnoEntry } from "./sys/errno.js";

/** The symbolic name of `errno` (`"ENOENT"`), or `"errno N"` for one this table does not know. */
export function errnoName(errno: number): string {
  return errnoEntry(errno)?.[0] ?? `errno ${errno}`;
}

/**
 * `errno` as a person reads it: `"no such file or directory (ENOENT)"`; an unknown value gives
 * `"errno N"`.
 */
export function describeErrno(errno: number): string {
  const e = errnoEntry(errno);
  return e === undefined ? `errno ${errno}` : `${e[1]} (${e[0]})`;
}
