/**
 * Memory-management system calls (memfd, mmap, munmap, mprotect, ftruncate, fcntl seals, close)
 * for guest memory and VIRTIO Shared Memory Regions. Every function returns the raw result and the
 * caller checks it; failures report `errno` through {@link mmanErrno}.
 * @module
 */
import { koffi, lastErrno, libc } from "./libc.js";

/** `PROT_*` bits for {@link mmap} / {@link mprotect} (Linux values). */
export const PROT = { NONE: 0, READ: 1, WRITE: 2 } as const;

/** `MAP_*` bits for {@link mmap} (Linux x86-64/aarch64 values). */
export const MAP = { SHARED: 0x01, PRIVATE: 0x02, FIXED: 0x10, ANONYMOUS: 0x20, NORESERVE: 0x4000 } as const;

/** `memfd_create` flags. */
export const MFD = { CLOEXEC: 0x1, ALLOW_SEALING: 0x2 } as const;

/** `fcntl` file-seal commands and seal bits. */
export const SEAL = { ADD_SEALS: 1033, GET_SEALS: 1034, SEAL: 0x1, SHRINK: 0x2, GROW: 0x4, WRITE: 0x8 } as const;

/** Opaque native pointer as returned by koffi (`void *`). */
export type NativePointer = unknown;

interface Fns {
  memfd_create: (name: string, flags: number) => number;
  ftruncate: (fd: number, len: bigint) => number;
  fcntl: (fd: number, cmd: number, arg: number) => number;
  mmap: (addr: bigint, len: number, prot: number, flags: number, fd: number, off: bigint) => NativePointer;
  munmap: (addr: bigint, len: number) => number;
  mprotect: (addr: bigint, len: number, prot: number) => number;
  close: (fd: number) => number;
}

let fns: Fns | undefined;
function f(): Fns {
  if (fns === undefined) {
    const l = libc();
    fns = {
      memfd_create: l.func("int memfd_create(const char *name, unsigned int flags)") as Fns["memfd_create"],
      ftruncate: l.func("int ftruncate(int fd, int64_t len)") as Fns["ftruncate"],
      fcntl: l.func("int fcntl(int fd, int cmd, int arg)") as Fns["fcntl"],
      mmap: l.func("void *mmap(uintptr_t addr, size_t len, int prot, int flags, int fd, int64_t off)") as Fns["mmap"],
      munmap: l.func("int munmap(uintptr_t addr, size_t len)") as Fns["munmap"],
      mprotect: l.func("int mprotect(uintptr_t addr, size_t len, int prot)") as Fns["mprotect"],
      close: l.func("int close(int fd)") as Fns["close"],
    };
  }
  return fns;
}

/** `errno` of the last failed call in this file (read it immediately). */
export function mmanErrno(): number {
  return lastErrno();
}

/** `memfd_create(name, flags)`. Returns a new fd (caller owns it) or -1. */
export function memfdCreate(name: string, flags: number): number {
  return f().memfd_create(name, flags);
}

/** `ftruncate(fd, len)`; `len` in bytes. Returns 0 or -1. */
export function ftruncate(fd: number, len: bigint): number {
  return f().ftruncate(fd, len);
}

/** `fcntl(fd, F_ADD_SEALS, seals)`. Returns 0 or -1. */
export function addSeals(fd: number, seals: number): number {
  return f().fcntl(fd, SEAL.ADD_SEALS, seals);
}

/** `fcntl(fd, F_GET_SEALS)`. Returns the seal bits or -1. */
export function getSeals(fd: number): number {
  return f().fcntl(fd, SEAL.GET_SEALS, 0);
}

/** Host address `(void *)-1` that {@link mmap} returns on failure, as a bigint. */
export const MAP_FAILED = (1n << 64n) - 1n;

/**
 * `mmap(addr, len, prot, flags, fd, off)`; `addr` 0n unless `MAP.FIXED`. Returns the mapping's
 * address as a bigint ({@link MAP_FAILED} on error) and the native pointer (for `koffi.view`).
 */
export function mmap(addr: bigint, len: number, prot: number, flags: number, fd: number, off: bigint): { addr: bigint; ptr: NativePointer } {
  const ptr = f().mmap(addr, len, prot, flags, fd, off);
  return { addr: koffi.address(ptr), ptr };
}

/** `munmap(addr, len)`. Returns 0 or -1. */
export function munmap(addr: bigint, len: number): number {
  return f().munmap(addr, len);
}

/** `mprotect(addr, len, prot)`. Returns 0 or -1. */
export function mprotect(addr: bigint, len: number, prot: number): number {
  return f().mprotect(addr, len, prot);
}

/** `close(fd)`. Returns 0 or -1. The fd must not be used afterwards. */
export function closeFd(fd: number): number {
  return f().close(fd);
}

/**
 * An `ArrayBuffer` over `len` bytes of native memory at `ptr` (no copy). Touching it after the
 * memory is unmapped or made `PROT_NONE` kills the process: create it once per mapping.
 */
export function nativeView(ptr: NativePointer, len: number): ArrayBuffer {
  return koffi.view(ptr, len);
}
