/**
 * errno -> transport error kind, mapped once (rust-vmm `From<errno>`).
 * @module
 */
/**
 * The errno values vhostkit reads or sends (Linux numbering, the same on x86-64 and aarch64): the
 * ones transport classifies after a failed call, and the positive statuses a front-end answers a
 * refused back-end request with. The one table of errno numbers in the repository.
 */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  EINTR: 4,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EEXIST: 17,
  ENODEV: 19,
  EINVAL: 22,
  ENOSPC: 28,
  EPIPE: 32,
  ECONNABORTED: 103,
  ECONNRESET: 104,
  ENOBUFS: 105,
  ECONNREFUSED: 111,
} as const;

/** How a failed call should be treated. */
export type ErrnoKind = "retry" | "broken" | "disconnected";

/** Classify an errno: EAGAIN/EINTR/ENOBUFS retry, ECONNRESET/EPIPE disconnected, the rest broken. */
export function classifyErrno(errno: number): ErrnoKind {
  switch (errno) {
    case Errno.EAGAIN:
    case Errno.EINTR:
    case Errno.ENOBUFS:
      return "retry";
    case Errno.ECONNRESET:
    case Errno.EPIPE:
      return "disconnected";
    default:
      return "broken";
  }
}
