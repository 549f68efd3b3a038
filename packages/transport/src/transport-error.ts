import { VhostUserError, type ErrorDetail } from "@vhostkit/wire";

/** Codes a {@link TransportError} may carry. */
export type TransportErrorCode =
  | "SYSCALL"
  | "EOF"
  | "CLOSED"
  | "OVERSIZE"
  | "TOO_MANY_FDS"
  | "CTRUNC"
  | "FDS_ON_BODY"
  | "BAD_CMSG"
  | "TIMEOUT"
  | "BAD_REPLY"
  | "BUSY"
  | "ADDR_IN_USE"
  | "PATH_TOO_LONG";

/** How the caller should react: retry the call, or the connection is broken / gone / partial. */
export type TransportErrorKind = "retry" | "broken" | "disconnected" | "partial";

/**
 * Error raised by transport I/O. `errno`/`syscall` are set for failed system calls (0 / `""`
 * otherwise). Once an endpoint raises a non-retry error it latches it and refuses further I/O.
 */
export class TransportError extends VhostUserError<TransportErrorCode> {
  /** errno of the failed call, 0 when no system call failed. */
  readonly errno: number;
  /** Name of the failed system call, `""` when none. */
  readonly syscall: string;
  /** Reaction class. */
  readonly kind: TransportErrorKind;

  /**
   * @param code - reason.
   * @param kind - reaction class.
   * @param message - lowercase message.
   * @param sys - failed system call and errno, if any.
   * @param detail - structured detail.
   */
  constructor(
    code: TransportErrorCode,
    kind: TransportErrorKind,
    message: string,
    sys: { errno: number; syscall: string } = { errno: 0, syscall: "" },
    detail: ErrorDetail = {},
  ) {
    super(code, message, detail);
    this.kind = kind;
    this.errno = sys.errno;
    this.syscall = sys.syscall;
  }
}

/** The single classification point: true for every non-`retry` transport error (the connection is unusable). */
export function shouldReconnect(err: unknown): boolean {
  return err instanceof TransportError && err.kind !== "retry";
}
