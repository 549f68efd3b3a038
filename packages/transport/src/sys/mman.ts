/**
 * Memory-management system calls (memfd, mmap, munmap, mprotect, ftruncate, fcntl seals, dup,
 * fstat, close)
 * for guest memory and VIRTIO Shared Memory Regions. Every function returns the raw result and the
 * caller checks it; failures report `errno` through {@link mmanErrno}.
 * @module
 */
import { koffi, lastErrno, libc } from "./libc.js";

/** `PROT_*` bits for {@link mmap} / {@link mprotect} (Linux values). */
export const PROT = { NONE: 0, READ: 1, WRITE: 2 } as const;

/** `MAP_*` bits for {@link mmap} (Linux x86-64/aarch64 values). */
export const MAP = {
  SHARED: 0x01,
  PRIVATE: 0x02,
  FIXED: 0x10,
  ANONYMOUS: 0x20,
  NORESERVE: 0x4000,
  FIXED_NOREPLACE: 0x100000,
} as const;

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
  fstat: (fd: number, buf: Uint8Array) => number;
  mmapAddr: (addr: number | bigint, len: number, prot: number, flags: number, fd: number, off: number | bigint) => number | bigint;
  sysconf: (name: number) => bigint | number;
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
      // `void *` with a reused buffer: koffi passes its memory directly (no per-call copy).
      fstat: l.func("int fstat(int fd, void *buf)") as Fns["fstat"],
      // The same mmap returning a plain integer: no pointer object per call on the map/unmap path.
      mmapAddr: l.func("uintptr_t mmap(uintptr_t addr, size_t len, int prot, int flags, int fd, int64_t off)") as Fns["mmapAddr"],
      sysconf: l.func("long sysconf(int name)") as Fns["sysconf"],
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

/**
 * A close-on-exec memfd of `size` bytes sealed against shrinking and growing
 * (`F_SEAL_SHRINK | F_SEAL_GROW`). Back-ends should send such fds with SHMEM_MAP: a file that can
 * be truncated while mapped turns every later access into SIGBUS, so the vhostkit front-end refuses
 * unsealed memfds. Returns the fd (caller owns it), or the negated errno of the call that failed
 * (nothing is left open then).
 */
export function sealedMemfd(name: string, size: bigint): number {
  const fd = memfdCreate(name, MFD.CLOEXEC | MFD.ALLOW_SEALING);
  if (fd < 0) return -lastErrno();
  if (ftruncate(fd, size) === 0 && addSeals(fd, SEAL.SHRINK | SEAL.GROW) === 0) return fd;
  const errno = lastErrno();
  closeFd(fd);
  return -errno;
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

/** Result of {@link mmapOrErrno}: the mapping's address, or the `errno` read right after the failed call. */
export type MmapResult = { readonly ok: true; readonly addr: bigint } | { readonly ok: false; readonly errno: number };

/**
 * `mmap` that reads `errno` immediately on failure (no other FFI call in between), so callers can
 * report it. Same arguments as {@link mmap}; returns the address only (use {@link pointerAt} for a
 * view), which keeps a map/unmap pair free of per-call pointer objects.
 */
export function mmapOrErrno(addr: bigint, len: number, prot: number, flags: number, fd: number, off: bigint): MmapResult {
  // koffi converts a JS number to a 64-bit argument faster than a bigint (~0.6 µs per call here);
  // user-space addresses (< 2^47) and offsets below 2^53 are exact as numbers.
  const got = BigInt(f().mmapAddr(addr <= SAFE ? Number(addr) : addr, len, prot, flags, fd, off <= SAFE && off >= 0n ? Number(off) : off));
  if (got === MAP_FAILED) return { ok: false, errno: lastErrno() };
  return { ok: true, addr: got };
}

const SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const F_DUPFD_CLOEXEC = 1030;

/** `fcntl(fd, F_DUPFD_CLOEXEC, 0)`: a new close-on-exec fd for the same file (caller owns it), or -1. */
export function dupCloexec(fd: number): number {
  return f().fcntl(fd, F_DUPFD_CLOEXEC, 0);
}

/** `S_IFMT` / `S_IFREG` bits of `st_mode`. */
const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
/** `struct stat` is 144 bytes on x86-64 and 128 on aarch64. */
const statBuf = new Uint8Array(144);
const statView = new DataView(statBuf.buffer);

/** What {@link fstatSize} reports about an fd. */
export interface FdStat {
  /** `st_size` in bytes. */
  readonly size: bigint;
  /** True for a regular file (memfd, tmpfs, hugetlbfs files): `size` bounds what can be mapped. */
  readonly regular: boolean;
}

/**
 * `fstat(fd)` reduced to size and file type; `undefined` on failure (errno in {@link mmanErrno}).
 * Layout of `struct stat` for x86-64 (st_mode at 24) and the generic layout of aarch64 (st_mode at
 * 16); `st_size` is at 48 on both.
 */
export function fstatSize(fd: number): FdStat | undefined {
  // SAFETY: fstat is synchronous and JS single-threaded, so one reused buffer is never shared.
  if (f().fstat(fd, statBuf) !== 0) return undefined;
  const dv = statView;
  const mode = dv.getUint32(process.arch === "x64" ? 24 : 16, true);
  return { size: dv.getBigInt64(48, true), regular: (mode & S_IFMT) === S_IFREG };
}

const SC_PAGESIZE = 30;
let pageSizeCache: number | undefined;

/** The host page size in bytes (`sysconf(_SC_PAGESIZE)`), read once. */
export function pageSize(): number {
  pageSizeCache ??= Number(f().sysconf(SC_PAGESIZE));
  return pageSizeCache;
}

/**
 * The native pointer for host address `addr` (pointer arithmetic for {@link nativeView}: koffi
 * pointers cannot be offset directly, so the address is decoded from memory as a `void *`).
 * Creating the pointer touches nothing; using it is only safe while `addr` is mapped.
 */
export function pointerAt(addr: bigint): NativePointer {
  return koffi.decode(new BigUint64Array([addr]), "void *") as NativePointer;
}
