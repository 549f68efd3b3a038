/**
 * Socket and fd system calls declared through koffi. Pointers are native memory from
 * {@link nativeAlloc} (never JS buffers) so that `.async` calls on koffi worker threads see
 * stable addresses.
 * @module
 */
import { koffi, libc } from "./libc.js";

/** AF_UNIX. */
export const AF_UNIX = 1;
/** SOCK_STREAM. */
export const SOCK_STREAM = 1;
/** SOCK_CLOEXEC. */
export const SOCK_CLOEXEC = 0o2000000;
/** MSG_DONTWAIT. */
export const MSG_DONTWAIT = 0x40;
/** MSG_NOSIGNAL: EPIPE instead of SIGPIPE. */
export const MSG_NOSIGNAL = 0x4000;
/** MSG_CTRUNC (in msg_flags after recvmsg). */
export const MSG_CTRUNC = 0x8;
/** MSG_CMSG_CLOEXEC. */
export const MSG_CMSG_CLOEXEC = 0x40000000;
/** SOCK_NONBLOCK. */
export const SOCK_NONBLOCK = 0o4000;

type Fn = ((...args: never[]) => number) & { async: (...args: unknown[]) => void };

/** Lazily declared libc functions. @internal */
export interface SocketSys {
  socketpair(domain: number, type: number, proto: number, sv: Int32Array): number;
  sendmsg(fd: number, msg: unknown, flags: number): number;
  recvmsg(fd: number, msg: unknown, flags: number): number;
  close(fd: number): number;
  malloc(size: number): unknown;
  free(ptr: unknown): void;
  fcntl(fd: number, cmd: number, arg: number): number;
  pipe2(fds: Int32Array, flags: number): number;
  write(fd: number, buf: Uint8Array, len: number): number;
  read(fd: number, buf: Uint8Array, len: number): number;
  memfd_create(name: string, flags: number): number;
  socket(domain: number, type: number, proto: number): number;
  bind(fd: number, addr: Uint8Array, len: number): number;
  listen(fd: number, backlog: number): number;
  connect(fd: number, addr: Uint8Array, len: number): number;
  accept4(fd: number, addr: null, len: null, flags: number): number;
}

let sys: SocketSys | undefined;

/** The socket functions, declared on first use. @internal */
export function socketSys(): SocketSys {
  if (sys) return sys;
  const lib = libc();
  // SAFETY: prototypes match glibc x86_64/aarch64 (ssize_t -> intptr_t as int64, size_t as uint64).
  const f = (proto: string): Fn => lib.func(proto) as unknown as Fn;
  const s = {
    socketpair: f("int socketpair(int, int, int, _Out_ int *sv)"),
    sendmsg: f("int64_t sendmsg(int, void *, int)"),
    recvmsg: f("int64_t recvmsg(int, void *, int)"),
    close: f("int close(int)"),
    malloc: f("void *malloc(uint64_t)"),
    free: f("void free(void *)"),
    fcntl: f("int fcntl(int, int, int)"),
    pipe2: f("int pipe2(_Out_ int *fds, int)"),
    write: f("int64_t write(int, const uint8_t *, uint64_t)"),
    read: f("int64_t read(int, _Out_ uint8_t *, uint64_t)"),
    memfd_create: f("int memfd_create(const char *, unsigned int)"),
    socket: f("int socket(int, int, int)"),
    bind: f("int bind(int, const uint8_t *, uint32_t)"),
    listen: f("int listen(int, int)"),
    connect: f("int connect(int, const uint8_t *, uint32_t)"),
    accept4: f("int accept4(int, void *, void *, int)"),
  };
  sys = s as unknown as SocketSys;
  return sys;
}

const F_GETFL = 3;
const F_SETFL = 4;
const O_NONBLOCK = 0o4000;

/** Set `O_NONBLOCK` on `fd` (borrowed). Returns 0 or -1 (errno via `lastErrno`). @internal */
export function setNonBlocking(fd: number): number {
  const s = socketSys();
  const fl = s.fcntl(fd, F_GETFL, 0);
  if (fl < 0) return -1;
  return (fl & O_NONBLOCK) !== 0 ? 0 : s.fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/** Native memory block with a JS view over it, freed by {@link NativeBlock.free}. @internal */
export interface NativeBlock {
  readonly ptr: unknown;
  readonly addr: bigint;
  readonly bytes: Uint8Array;
  readonly view: DataView;
  free(): void;
}

/** Allocate `size` bytes of zeroed native memory. @internal */
export function nativeAlloc(size: number): NativeBlock {
  const s = socketSys();
  const ptr = s.malloc(size);
  const ab = koffi.view(ptr, size);
  const bytes = new Uint8Array(ab);
  bytes.fill(0);
  let freed = false;
  return {
    ptr,
    addr: koffi.address(ptr),
    bytes,
    view: new DataView(ab),
    free() {
      if (!freed) {
        freed = true;
        s.free(ptr);
      }
    },
  };
}

/**
 * Native address of the first byte of `bytes` (a JS buffer or a view of mapped memory), as a
 * Number (user-space addresses are below 2^47). Valid only until the next await: hand it to a
 * system call in the same synchronous stretch of code, while `bytes` is alive. Never send it to a
 * peer. @internal
 */
export function addressOf(bytes: Uint8Array): number {
  // SAFETY: koffi reads the view's backing store pointer (plus byteOffset); the memory is not touched.
  return Number(koffi.address(bytes));
}

/** Encode a sockaddr_un for `path` (AF_UNIX, NUL-terminated, at most 107 bytes). @internal */
export function sockaddrUn(path: string): Uint8Array | undefined {
  const p = new TextEncoder().encode(path);
  if (p.length > 107) return undefined;
  const a = new Uint8Array(110);
  a[0] = AF_UNIX;
  a.set(p, 2);
  return a;
}
