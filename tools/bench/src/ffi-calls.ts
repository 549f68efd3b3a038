/**
 * Measurement loop of the ffi benchmark (issue 17), run by Bun only: the transport's hot system
 * calls through koffi (declared with the transport's own prototypes, `packages/transport/src/sys/`,
 * and the koffi the transport resolves) and through `bun:ffi`, interleaved call by call kind in one
 * process, over the same native memory and fds:
 *
 * - `sendmsg+recvmsg`: one 20-byte message (a 12-byte header + 8-byte payload) sent on a socketpair
 *   and received on the other end, `MSG_DONTWAIT`, msghdrs in native memory (as `Endpoint` does);
 * - `recvmsg EAGAIN`: a non-blocking recvmsg on an empty socket (the reactor's drain ends with one);
 * - `eventfd write+read`: one 8-byte write and read on an eventfd (`EventFd.signal` / drain; koffi
 *   given a JS buffer, as `EventFd` does), and the same with koffi given native memory;
 * - `epoll_wait(0)`: a zero-timeout epoll_wait that returns one ready fd (the reactor's poll);
 * - `getpid`: a trivial call, for reference.
 *
 * Usage: `bun ffi-calls.ts <calls per case> [koffi-first|bun-ffi-first]` (which of the two runs
 * first in each case). Prints one JSON object: ns per call per case and implementation.
 */
import { dlopen, FFIType } from "bun:ffi";
import { createRequire } from "node:module";
import { join } from "node:path";

/** The part of koffi used here. */
interface Koffi {
  load(path: string): { func(prototype: string): (...args: unknown[]) => unknown };
  view(ptr: unknown, len: number): ArrayBuffer;
  address(ptr: unknown): bigint;
}
// The koffi the transport uses (tools/bench does not depend on koffi itself).
const koffi = createRequire(join(import.meta.dir, "..", "..", "..", "packages", "transport", "package.json"))("koffi") as Koffi;

const n = Number(process.argv[2] ?? 100000);
const order = process.argv[3] === "bun-ffi-first" ? (["bun:ffi", "koffi"] as const) : (["koffi", "bun:ffi"] as const);
const AF_UNIX = 1;
const SOCK_STREAM = 1;
const SOCK_CLOEXEC = 0o2000000;
const MSG_DONTWAIT = 0x40;
const MSG_NOSIGNAL = 0x4000;
const EFD_NONBLOCK = 0o4000;
const EPOLL_CTL_ADD = 1;
const EPOLLIN = 1;

const lib = koffi.load("libc.so.6");
// SAFETY: the transport's prototypes (socket.ts, epoll.ts); pointers point into malloc'd memory.
const k = {
  socketpair: lib.func("int socketpair(int, int, int, _Out_ int *sv)"),
  sendmsg: lib.func("int64_t sendmsg(int, void *, int)"),
  recvmsg: lib.func("int64_t recvmsg(int, void *, int)"),
  write: lib.func("int64_t write(int, const uint8_t *, uint64_t)"),
  read: lib.func("int64_t read(int, _Out_ uint8_t *, uint64_t)"),
  eventfd: lib.func("int eventfd(unsigned int, int)"),
  epoll_create1: lib.func("int epoll_create1(int)"),
  epoll_ctl: lib.func("int epoll_ctl(int, int, int, void *)"),
  epoll_wait: lib.func("int epoll_wait(int, void *, int, int)"),
  getpid: lib.func("int getpid(void)"),
  // The same two calls taking a native pointer: separates koffi's crossing from passing a JS buffer.
  writePtr: lib.func("int64_t write(int, void *, uint64_t)"),
  readPtr: lib.func("int64_t read(int, void *, uint64_t)"),
  malloc: lib.func("void *malloc(uint64_t)"),
};
// SAFETY: glibc x86_64/aarch64 prototypes (ssize_t as i64); pointer arguments are addresses.
const b = dlopen("libc.so.6", {
  sendmsg: { args: [FFIType.i32, FFIType.ptr, FFIType.i32], returns: FFIType.i64_fast },
  recvmsg: { args: [FFIType.i32, FFIType.ptr, FFIType.i32], returns: FFIType.i64_fast },
  write: { args: [FFIType.i32, FFIType.ptr, FFIType.u64_fast], returns: FFIType.i64_fast },
  read: { args: [FFIType.i32, FFIType.ptr, FFIType.u64_fast], returns: FFIType.i64_fast },
  epoll_wait: { args: [FFIType.i32, FFIType.ptr, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
  getpid: { args: [], returns: FFIType.i32 },
}).symbols;

// Native memory shared by both (as the transport keeps its msghdrs: malloc'd once): a send and a
// receive msghdr, one iovec each over one 64-byte data buffer, epoll events, an eventfd buffer.
const alloc = (len: number): { ptr: unknown; addr: number; view: DataView } => {
  const ptr = k.malloc(len);
  const view = new DataView(koffi.view(ptr, len));
  for (let i = 0; i < len; i++) view.setUint8(i, 0);
  return { ptr, addr: Number(koffi.address(ptr)), view };
};
const data = alloc(64);
const msghdr = (len: number): { ptr: unknown; addr: number } => {
  const iov = alloc(16);
  iov.view.setBigUint64(0, BigInt(data.addr), true);
  iov.view.setBigUint64(8, BigInt(len), true);
  const hdr = alloc(64); // struct msghdr: msg_iov at 16, msg_iovlen at 24 (56 bytes on 64-bit Linux)
  hdr.view.setBigUint64(16, BigInt(iov.addr), true);
  hdr.view.setBigUint64(24, 1n, true);
  return hdr;
};
const send = msghdr(20);
const recv = msghdr(64);
const events = alloc(128);
const efdNative = alloc(8);
efdNative.view.setBigUint64(0, 1n, true);

const sv = [0, 0];
if (k.socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) !== 0) throw new Error("socketpair failed");
const [s0, s1] = sv as [number, number];
const efd = k.eventfd(0, EFD_NONBLOCK) as number;
const ready = k.eventfd(1, EFD_NONBLOCK) as number; // always readable: epoll_wait returns 1
const epfd = k.epoll_create1(0) as number;
const ev = new Uint8Array(16);
new DataView(ev.buffer).setUint32(0, EPOLLIN, true);
if (k.epoll_ctl(epfd, EPOLL_CTL_ADD, ready, ev) !== 0) throw new Error("epoll_ctl failed");

// koffi gets pointer objects (as the transport passes `block.ptr`) and, for the eventfd, a JS
// buffer (as `EventFd` does); bun:ffi gets plain addresses of the same native memory.
const [kSend, kRecv, kEvents, kEfd] = [send.ptr, recv.ptr, events.ptr, efdNative.ptr];
const [bSend, bRecv, bEvents, bEfdBuf] = [send.addr, recv.addr, events.addr, efdNative.addr];
const efdBuf = new Uint8Array(8);
new DataView(efdBuf.buffer).setBigUint64(0, 1n, true);
const efdIn = new Uint8Array(8);

type Case = Record<"koffi" | "bun:ffi", () => void>;
const fail = (what: string, got: number | bigint): never => {
  throw new Error(`${what} returned ${got}`);
};
const cases: Record<string, Case> = {
  "sendmsg+recvmsg": {
    koffi: () => {
      const w = Number(k.sendmsg(s0, kSend, MSG_DONTWAIT | MSG_NOSIGNAL));
      const r = Number(k.recvmsg(s1, kRecv, MSG_DONTWAIT));
      if (w !== 20 || r !== 20) fail("sendmsg/recvmsg", w * 1000 + r);
    },
    "bun:ffi": () => {
      const w = Number(b.sendmsg(s0, bSend, MSG_DONTWAIT | MSG_NOSIGNAL));
      const r = Number(b.recvmsg(s1, bRecv, MSG_DONTWAIT));
      if (w !== 20 || r !== 20) fail("sendmsg/recvmsg", w * 1000 + r);
    },
  },
  "recvmsg EAGAIN": {
    koffi: () => {
      if (Number(k.recvmsg(s1, kRecv, MSG_DONTWAIT)) !== -1) fail("recvmsg", 0);
    },
    "bun:ffi": () => {
      if (Number(b.recvmsg(s1, bRecv, MSG_DONTWAIT)) !== -1) fail("recvmsg", 0);
    },
  },
  "eventfd write+read": {
    koffi: () => {
      if (Number(k.write(efd, efdBuf, 8)) !== 8 || Number(k.read(efd, efdIn, 8)) !== 8) fail("eventfd", -1);
    },
    "bun:ffi": () => {
      if (Number(b.write(efd, bEfdBuf, 8)) !== 8 || Number(b.read(efd, bEfdBuf, 8)) !== 8) fail("eventfd", -1);
    },
  },
  "eventfd write+read, native buffer": {
    koffi: () => {
      if (Number(k.writePtr(efd, kEfd, 8)) !== 8 || Number(k.readPtr(efd, kEfd, 8)) !== 8) fail("eventfd", -1);
    },
    "bun:ffi": () => {
      if (Number(b.write(efd, bEfdBuf, 8)) !== 8 || Number(b.read(efd, bEfdBuf, 8)) !== 8) fail("eventfd", -1);
    },
  },
  "epoll_wait(0)": {
    koffi: () => {
      if (k.epoll_wait(epfd, kEvents, 8, 0) !== 1) fail("epoll_wait", 0);
    },
    "bun:ffi": () => {
      if (b.epoll_wait(epfd, bEvents, 8, 0) !== 1) fail("epoll_wait", 0);
    },
  },
  getpid: {
    koffi: () => void k.getpid(),
    "bun:ffi": () => void b.getpid(),
  },
};

const out: Record<string, Record<string, number>> = {};
for (const [name, c] of Object.entries(cases)) {
  out[name] = {};
  for (const impl of order) {
    const f = c[impl];
    for (let i = 0; i < Math.min(n, 2000); i++) f(); // warm-up (JIT)
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) f();
    (out[name] as Record<string, number>)[impl] = Number(process.hrtime.bigint() - t0) / n;
  }
}
console.log(JSON.stringify(out));
