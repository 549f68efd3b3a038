/**
 * errno -> transport error kind, mapped once (rust-vmm `From<errno>`).
 * @module
 */
/** errno values used by transport. */
export const Errno = {
  EINTR: 4,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EPIPE: 32,
  ENOBUFS: 105,
  ECONNRESET: 104,
  ECONNREFUSED: 111,
  ENOENT: 2,
  ECONNABORTED: 103,
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
