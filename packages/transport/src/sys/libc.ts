/**
 * The one place that loads libc through koffi.
 *
 * Declarations live beside this file, one file per concern (`socket.ts`, `eventfd.ts`, `mman.ts`,
 * ...), each calling {@link libc} lazily so importing the package costs nothing until the first
 * system call. koffi works the same in Bun and in Node (docs/performance.md#ffi-call-costs).
 *
 * @module
 */
import koffi from "koffi";
import type { LibraryHandle } from "koffi";

let lib: LibraryHandle | undefined;

/**
 * The loaded C library (glibc `libc.so.6`), loaded on first use.
 * @internal
 */
export function libc(): LibraryHandle {
  lib ??= koffi.load("libc.so.6");
  return lib;
}

/**
 * `errno` of the calling thread, read through koffi. Read it immediately after the failing call:
 * any other FFI call in between may overwrite it.
 * @internal
 */
export function lastErrno(): number {
  return koffi.errno();
}

/** The koffi module itself, for declarations in sibling files. @internal */
export { koffi };
