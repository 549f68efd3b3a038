/**
 * eventfd(2): creation through koffi, and the 8-byte counter reads and writes of `EventFd` through
 * one of two legs behind one interface ({@link EventFdIo}): `bun:ffi` under Bun, where it measured
 * ≥ 1.5× faster than koffi for this pair (tools/bench/README.md, "koffi against bun:ffi"), and
 * koffi everywhere else (Node) or when `VHOSTKIT_FFI=koffi`.
 * @module
 */
import { createRequire } from "node:module";
import { lastErrno, libc } from "./libc.js";
import { nativeAlloc, socketSys, type NativeBlock } from "./socket.js";

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

/** Which FFI an {@link EventFdIo} calls libc through. @internal */
export type EventFdLeg = "bun:ffi" | "koffi";

/**
 * The system calls of an eventfd's counter, allocation-free: each returns the raw result (8, or -1
 * with {@link EventFdIo.errno} to be read at once). @internal
 */
export interface EventFdIo {
  /** The FFI behind it. */
  readonly leg: EventFdLeg;
  /** `write(fd, &1, 8)`: add 1 to the counter. */
  writeOne(fd: number): number;
  /** `write(fd, &n, 8)`: add `n` (u64). */
  write(fd: number, n: bigint): number;
  /** `read(fd, &value, 8)`: take the counter; the value is then in {@link EventFdIo.value}. */
  read(fd: number): number;
  /** The u64 the last successful {@link EventFdIo.read} returned. */
  value(): bigint;
  /** errno of the last failed call of this leg. */
  errno(): number;
}

/** The part of `bun:ffi` used here. */
interface BunFfi {
  dlopen(path: string, symbols: Record<string, { args: string[]; returns: string }>): { symbols: Record<string, (...args: number[]) => number> };
  read: { i32(ptr: number, offset: number): number };
}

/** True when running under Bun, where `bun:ffi` exists. */
const IS_BUN = typeof (process.versions as Record<string, string | undefined>)["bun"] === "string";

/** Native scratch: the u64 1 at 0 (written once), a value to write at 8, the value read at 16. */
function scratch(): NativeBlock {
  const b = nativeAlloc(24);
  b.view.setBigUint64(0, 1n, true);
  return b;
}

function koffiLeg(): EventFdIo {
  const s = socketSys();
  const b = scratch();
  const one = b.bytes.subarray(0, 8);
  const out = b.bytes.subarray(8, 16);
  const got = b.bytes.subarray(16, 24);
  return {
    leg: "koffi",
    // SAFETY: 8-byte buffers of the scratch block, which lives as long as the process.
    writeOne: (fd) => Number(s.write(fd, one, 8)),
    write(fd, n) {
      b.view.setBigUint64(8, n, true);
      return Number(s.write(fd, out, 8));
    },
    read: (fd) => Number(s.read(fd, got, 8)),
    value: () => b.view.getBigUint64(16, true),
    errno: lastErrno,
  };
}

function bunLeg(): EventFdIo {
  // Only under Bun: the specifier does not resolve in Node, which never gets here.
  const ffi = createRequire(import.meta.url)("bun:ffi") as BunFfi;
  // SAFETY: glibc prototypes (ssize_t as i64); pointers are addresses of the native scratch below.
  const { symbols: c } = ffi.dlopen("libc.so.6", {
    read: { args: ["i32", "ptr", "u64_fast"], returns: "i64_fast" },
    write: { args: ["i32", "ptr", "u64_fast"], returns: "i64_fast" },
    __errno_location: { args: [], returns: "ptr" },
  });
  const read = c["read"]!;
  const write = c["write"]!;
  // errno of the JavaScript thread, the only thread that calls these.
  const errnoAt = c["__errno_location"]!();
  const b = scratch();
  const at = Number(b.addr);
  return {
    leg: "bun:ffi",
    writeOne: (fd) => write(fd, at, 8),
    write(fd, n) {
      b.view.setBigUint64(8, n, true);
      return write(fd, at + 8, 8);
    },
    read: (fd) => read(fd, at + 16, 8),
    value: () => b.view.getBigUint64(16, true),
    errno: () => ffi.read.i32(errnoAt, 0),
  };
}

const legs: Partial<Record<EventFdLeg, EventFdIo>> = {};

/** The legs this runtime has: both under Bun, koffi only elsewhere. @internal */
export function eventFdLegs(): EventFdLeg[] {
  return IS_BUN ? ["bun:ffi", "koffi"] : ["koffi"];
}

/**
 * The eventfd counter calls through `leg` (default: `bun:ffi` under Bun unless `VHOSTKIT_FFI=koffi`,
 * koffi otherwise), created on first use. `bun:ffi` asked for outside Bun (or failing to load) gives
 * the koffi leg. @internal
 */
export function eventFdIo(leg: EventFdLeg = IS_BUN && process.env["VHOSTKIT_FFI"] !== "koffi" ? "bun:ffi" : "koffi"): EventFdIo {
  let io = legs[leg];
  if (io === undefined) {
    if (leg === "bun:ffi" && IS_BUN) {
      try {
        io = bunLeg();
      } catch {
        // A Bun without this bun:ffi: koffi serves (the same calls, a little slower).
        io = eventFdIo("koffi");
      }
    } else io = leg === "koffi" ? koffiLeg() : eventFdIo("koffi");
    legs[leg] = io;
  }
  return io;
}
