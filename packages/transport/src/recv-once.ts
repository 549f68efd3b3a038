/**
 * One non-blocking `recvmsg` on an endpoint's socket into its receive scratch, with the control
 * data checked: every fd the kernel installed is wrapped at once, so whatever goes wrong later, each
 * is closed exactly once by whoever holds the array.
 * @module
 */
import { OwnedFd } from "./owned-fd.js";
import { TransportError } from "./transport-error.js";
import { classifyErrno, Errno } from "./sys/errno.js";
import { describeErrno } from "./errno-text.js";
import { CMSG_HDR, SCM_RIGHTS, SOL_SOCKET } from "./sys/cmsg.js";
import { CMSG, getSmallU64, type IoBlock, MSGHDR } from "./io-block.js";
import { lastErrno } from "./sys/libc.js";
import { MSG_CMSG_CLOEXEC, MSG_CTRUNC, MSG_DONTWAIT, socketSys } from "./sys/socket.js";

/** "Nothing to read yet" (EAGAIN) result of {@link recvOnce}. */
export const AGAIN = -1;

/**
 * One non-blocking recvmsg of what `rx`'s msghdr describes (the caller points its iovecs): bytes
 * read (0 = EOF), or {@link AGAIN}. EINTR is retried. Received fds are appended to `fds`, even when
 * it then throws (the caller closes them).
 * @param request - the request code of the message being read, named in errors; -1 while its header is incomplete.
 * @throws TransportError `SYSCALL` (recvmsg failed), `CTRUNC`, `BAD_CMSG`, `TOO_MANY_FDS` (more
 *   than `maxFds` in this read).
 */
export function recvOnce(sock: number, rx: IoBlock, fds: OwnedFd[], maxFds: number, request: number): number {
  let n: number;
  for (;;) {
    // SAFETY: msghdr/iovec/control point into rx.block or a buffer the caller holds for this call;
    // MSG_CMSG_CLOEXEC sets FD_CLOEXEC atomically.
    n = Number(socketSys().recvmsg(sock, rx.block.ptr, MSG_DONTWAIT | MSG_CMSG_CLOEXEC));
    if (n >= 0) break;
    const e = lastErrno();
    if (e === Errno.EINTR) continue;
    if (e === Errno.EAGAIN) return AGAIN;
    throw new TransportError("SYSCALL", classifyErrno(e), `recvmsg: ${describeErrno(e)}`, { errno: e, syscall: "recvmsg" });
  }
  const v = rx.block.view;
  const controlLen = getSmallU64(v, MSGHDR + 40);
  const msgFlags = v.getInt32(MSGHDR + 48, true);
  if (controlLen === 0 && (msgFlags & MSG_CTRUNC) === 0) return n;
  const start = fds.length;
  let bad: TransportError | undefined;
  let c = 0;
  while (c + CMSG_HDR <= controlLen) {
    const clen = getSmallU64(v, CMSG + c);
    const level = v.getInt32(CMSG + c + 8, true);
    const type = v.getInt32(CMSG + c + 12, true);
    if (clen < CMSG_HDR || c + clen > controlLen) break;
    if (level === SOL_SOCKET && type === SCM_RIGHTS) {
      const count = (clen - CMSG_HDR) >> 2;
      // Ownership: every fd the kernel installed is wrapped at once so every error path closes it.
      for (let i = 0; i < count; i++) fds.push(new OwnedFd(v.getInt32(CMSG + c + CMSG_HDR + 4 * i, true)));
    } else {
      bad ??= new TransportError("BAD_CMSG", "broken", `unexpected control message level ${level} type ${type}`);
    }
    c += (clen + 7) & ~7;
  }
  const name = request < 0 ? "header" : `request ${request}`;
  if (msgFlags & MSG_CTRUNC) bad = new TransportError("CTRUNC", "broken", `${name}: control data truncated (MSG_CTRUNC)`);
  else if (fds.length - start > maxFds)
    bad ??= new TransportError("TOO_MANY_FDS", "broken", `${name}: ${fds.length - start} fds exceed max ${maxFds}`, undefined, {
      expected: maxFds,
      actual: fds.length - start,
    });
  if (bad) throw bad;
  return n;
}
