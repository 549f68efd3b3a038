/**
 * Warm-up of the libc layer: every koffi declaration is made, and each hot system call runs once,
 * on scratch fds and memory of this process only, so that the first real request of a session does
 * not pay for them (tools/bench/README.md, "first request against steady state").
 * @module
 */
import { eventFdIo, eventfdSys, EFD_CLOEXEC, EFD_NONBLOCK } from "./eventfd.js";
import { epollSys } from "./epoll.js";
import { lastErrno } from "./libc.js";
import { closeFd, dupCloexec, fstatSize, getSeals, MAP, mmapOrErrno, munmap, pageSize, PROT, sealedMemfd } from "./mman.js";
import { schedYield } from "./sched.js";
import { AF_UNIX, MSG_DONTWAIT, MSG_NOSIGNAL, nativeAlloc, SOCK_CLOEXEC, SOCK_STREAM, socketSys } from "./socket.js";

let done = false;

/**
 * Declare every libc function the transport and regions use and run each hot one once on scratch
 * resources (a sealed memfd mapped and unmapped, an eventfd signalled and drained, a socketpair with
 * one message carrying no fds, an epoll set polled): a few hundred microseconds, once per process.
 * Idempotent; failures are ignored (the real calls report their own errors later). `Reactor.shared`
 * runs it when it is created, that is when a process opens its first connection.
 */
export function warmUpSys(): void {
  if (done) return;
  done = true;
  const s = socketSys();
  epollSys();
  lastErrno();
  schedYield();
  // Memory: the calls a SHMEM_MAP / ADD_MEM_REG makes (seals, fstat, dup, map, unmap, close).
  const page = pageSize();
  const fd = sealedMemfd("vhostkit-warm-up", BigInt(page));
  if (fd >= 0) {
    getSeals(fd);
    fstatSize(fd);
    const dup = dupCloexec(fd);
    const m = mmapOrErrno(0n, page, PROT.READ | PROT.WRITE, MAP.SHARED, fd, 0n);
    if (m.ok) munmap(m.addr, page);
    if (dup >= 0) closeFd(dup);
    closeFd(fd);
  }
  // The eventfd counter through the leg EventFd uses.
  const efd = eventfdSys(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (efd >= 0) {
    const io = eventFdIo();
    io.writeOne(efd);
    io.read(efd);
    io.read(efd);
    io.errno();
    s.close(efd);
  }
  // A socketpair: one empty sendmsg/recvmsg each way through native msghdrs, as Endpoint does.
  const sv = new Int32Array(2);
  if (s.socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) === 0) {
    const hdr = nativeAlloc(64);
    // SAFETY: a zeroed msghdr (no iovecs, no control): a 0-byte send, and a receive that finds nothing.
    s.recvmsg(sv[1]!, hdr.ptr, MSG_DONTWAIT);
    s.sendmsg(sv[0]!, hdr.ptr, MSG_DONTWAIT | MSG_NOSIGNAL);
    hdr.free();
    s.close(sv[0]!);
    s.close(sv[1]!);
  }
}
