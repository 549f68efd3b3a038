/**
 * errno values as text a person can act on: `no such file or directory (ENOENT)` instead of
 * `errno 2`. Linux x86-64 numbering; both the system calls of this package and a FUSE server's
 * negative `error` field use it.
 * @module
 */

/** Name and lowercase description of each errno this table knows (Linux numbering). */
const TABLE: ReadonlyMap<number, readonly [name: string, text: string]> = new Map([
  [1, ["EPERM", "operation not permitted"]],
  [2, ["ENOENT", "no such file or directory"]],
  [3, ["ESRCH", "no such process"]],
  [4, ["EINTR", "interrupted system call"]],
  [5, ["EIO", "input/output error"]],
  [6, ["ENXIO", "no such device or address"]],
  [7, ["E2BIG", "argument list too long"]],
  [9, ["EBADF", "bad file descriptor"]],
  [11, ["EAGAIN", "resource temporarily unavailable"]],
  [12, ["ENOMEM", "cannot allocate memory"]],
  [13, ["EACCES", "permission denied"]],
  [14, ["EFAULT", "bad address"]],
  [16, ["EBUSY", "device or resource busy"]],
  [17, ["EEXIST", "file exists"]],
  [18, ["EXDEV", "invalid cross-device link"]],
  [19, ["ENODEV", "no such device"]],
  [20, ["ENOTDIR", "not a directory"]],
  [21, ["EISDIR", "is a directory"]],
  [22, ["EINVAL", "invalid argument"]],
  [23, ["ENFILE", "too many open files in system"]],
  [24, ["EMFILE", "too many open files"]],
  [26, ["ETXTBSY", "text file busy"]],
  [27, ["EFBIG", "file too large"]],
  [28, ["ENOSPC", "no space left on device"]],
  [29, ["ESPIPE", "illegal seek"]],
  [30, ["EROFS", "read-only file system"]],
  [31, ["EMLINK", "too many links"]],
  [32, ["EPIPE", "broken pipe"]],
  [34, ["ERANGE", "numerical result out of range"]],
  [35, ["EDEADLK", "resource deadlock avoided"]],
  [36, ["ENAMETOOLONG", "file name too long"]],
  [37, ["ENOLCK", "no locks available"]],
  [38, ["ENOSYS", "function not implemented"]],
  [39, ["ENOTEMPTY", "directory not empty"]],
  [40, ["ELOOP", "too many levels of symbolic links"]],
  [61, ["ENODATA", "no data available"]],
  [71, ["EPROTO", "protocol error"]],
  [75, ["EOVERFLOW", "value too large for defined data type"]],
  [88, ["ENOTSOCK", "socket operation on non-socket"]],
  [91, ["EPROTOTYPE", "protocol wrong type for socket"]],
  [95, ["EOPNOTSUPP", "operation not supported"]],
  [98, ["EADDRINUSE", "address already in use"]],
  [99, ["EADDRNOTAVAIL", "cannot assign requested address"]],
  [103, ["ECONNABORTED", "software caused connection abort"]],
  [104, ["ECONNRESET", "connection reset by peer"]],
  [105, ["ENOBUFS", "no buffer space available"]],
  [107, ["ENOTCONN", "transport endpoint is not connected"]],
  [110, ["ETIMEDOUT", "connection timed out"]],
  [111, ["ECONNREFUSED", "connection refused"]],
  [116, ["ESTALE", "stale file handle"]],
  [122, ["EDQUOT", "disk quota exceeded"]],
  [125, ["ECANCELED", "operation canceled"]],
]);

/** The symbolic name of `errno` (`"ENOENT"`), or `"errno N"` for one this table does not know. */
export function errnoName(errno: number): string {
  return TABLE.get(errno)?.[0] ?? `errno ${errno}`;
}

/**
 * `errno` as a person reads it: `"no such file or directory (ENOENT)"`; an unknown value gives
 * `"errno N"`.
 */
export function describeErrno(errno: number): string {
  const e = TABLE.get(errno);
  return e === undefined ? `errno ${errno}` : `${e[1]} (${e[0]})`;
}
