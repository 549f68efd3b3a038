import { OwnedFd } from "./owned-fd.js";
import { TransportError } from "./transport-error.js";
import { classifyErrno } from "./sys/errno.js";
import { describeErrno } from "./errno-text.js";
import { lastErrno } from "./sys/libc.js";
import { AF_UNIX, SOCK_CLOEXEC, SOCK_STREAM, socketSys } from "./sys/socket.js";

/**
 * A connected AF_UNIX stream socket pair (close-on-exec), e.g. for SET_BACKEND_REQ_FD.
 * The caller owns both fds.
 * @throws TransportError `SYSCALL` when socketpair(2) fails.
 */
export function socketPair(): [OwnedFd, OwnedFd] {
  const sv = new Int32Array(2);
  // SAFETY: sv is an out-array of two ints.
  if (socketSys().socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) !== 0) {
    const e = lastErrno();
    throw new TransportError("SYSCALL", classifyErrno(e), `socketpair: ${describeErrno(e)}`, { errno: e, syscall: "socketpair" });
  }
  return [new OwnedFd(sv[0] ?? -1), new OwnedFd(sv[1] ?? -1)];
}
