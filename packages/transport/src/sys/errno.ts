/**
 * errno -> transport error kind, mapped once (rust-vmm `From<errno>`).
 * @module
 */
/**
 * Every errno vhostkit names (Linux numbering, the same on x86-64 and aarch64): its number and its
 * description as a person reads it. The one table of errno values in the repository: {@link Errno}
 * and the texts of `describeErrno` both come from it.
 */
export const ERRNO_TABLE = {
  EPERM: [1, "operation not permitted"],
  ENOENT: [2, "no such file or directory"],
  ESRCH: [3, "no such process"],
  EINTR: [4, "interrupted system call"],
  EIO: [5, "input/output error"],
  ENXIO: [6, "no such device or address"],
  E2BIG: [7, "argument list too long"],
  EBADF: [9, "bad file descriptor"],
  EAGAIN: [11, "resource temporarily unavailable"],
  ENOMEM: [12, "cannot allocate memory"],
  EACCES: [13, "permission denied"],
  EFAULT: [14, "bad address"],
  EBUSY: [16, "device or resource busy"],
  EEXIST: [17, "file exists"],
  EXDEV: [18, "invalid cross-device link"],
  ENODEV: [19, "no such device"],
  ENOTDIR: [20, "not a directory"],
  EISDIR: [21, "is a directory"],
  EINVAL: [22, "invalid argument"],
  ENFILE: [23, "too many open files in system"],
  EMFILE: [24, "too many open files"],
  ETXTBSY: [26, "text file busy"],
  EFBIG: [27, "file too large"],
  ENOSPC: [28, "no space left on device"],
  ESPIPE: [29, "illegal seek"],
  EROFS: [30, "read-only file system"],
  EMLINK: [31, "too many links"],
  EPIPE: [32, "broken pipe"],
  ERANGE: [34, "numerical result out of range"],
  EDEADLK: [35, "resource deadlock avoided"],
  ENAMETOOLONG: [36, "file name too long"],
  ENOLCK: [37, "no locks available"],
  ENOSYS: [38, "function not implemented"],
  ENOTEMPTY: [39, "directory not empty"],
  ELOOP: [40, "too many levels of symbolic links"],
  ENODATA: [61, "no data available"],
  EPROTO: [71, "protocol error"],
  EOVERFLOW: [75, "value too large for defined data type"],
  ENOTSOCK: [88, "socket operation on non-socket"],
  EPROTOTYPE: [91, "protocol wrong type for socket"],
  EOPNOTSUPP: [95, "operation not supported"],
  EADDRINUSE: [98, "address already in use"],
  EADDRNOTAVAIL: [99, "cannot assign requested address"],
  ECONNABORTED: [103, "software caused connection abort"],
  ECONNRESET: [104, "connection reset by peer"],
  ENOBUFS: [105, "no buffer space available"],
  ENOTCONN: [107, "transport endpoint is not connected"],
  ETIMEDOUT: [110, "connection timed out"],
  ECONNREFUSED: [111, "connection refused"],
  ESTALE: [116, "stale file handle"],
  EDQUOT: [122, "disk quota exceeded"],
  ECANCELED: [125, "operation canceled"],
} as const;

/** An errno name this repository knows (`"ENOENT"`). */
export type ErrnoName = keyof typeof ERRNO_TABLE;

/**
 * The errno values vhostkit reads or sends, by name: the ones transport classifies after a failed
 * call, the positive statuses a front-end answers a refused back-end request with, and those a FUSE
 * server may return.
 */
export const Errno: Readonly<Record<ErrnoName, number>> = Object.fromEntries(Object.entries(ERRNO_TABLE).map(([name, [value]]) => [name, value])) as Record<
  ErrnoName,
  number
>;

/** Name and description of an errno value, or undefined for one the table does not know. */
export function errnoEntry(errno: number): readonly [name: string, text: string] | undefined {
  return ERRNO_BY_VALUE.get(errno);
}

const ERRNO_BY_VALUE: ReadonlyMap<number, readonly [string, string]> = new Map(
  Object.entries(ERRNO_TABLE).map(([name, [value, text]]) => [value, [name, text]] as const),
);

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
