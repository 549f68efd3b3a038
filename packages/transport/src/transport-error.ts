import { VhostUserError, isVhostUserError, type ErrorDetail } from "@vhostkit/wire";

/** Codes a {@link TransportError} may carry. */
export type TransportErrorCode =
  | "SYSCALL"
  | "EOF"
  | "CLOSED"
  | "OVERSIZE"
  | "TOO_MANY_FDS"
  | "CTRUNC"
  | "FDS_ON_BODY"
  | "FDS_NOT_ALLOWED"
  | "BAD_CMSG"
  | "TIMEOUT"
  | "BAD_REPLY"
  | "BUSY"
  | "ADDR_IN_USE"
  | "PATH_TOO_LONG"
  | "NOT_A_PIPE"
  | "BAD_FD_MODE";

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

/** True when `x` is a {@link TransportError} (brand check plus class name, works across package copies). */
export function isTransportError(x: unknown): x is TransportError {
  return isVhostUserError(x) && x.name === "TransportError";
}

/**
 * The single classification point (rust-vmm `should_reconnect`): true when `err` means the connection
 * is unusable and a new one is needed — a transport error of kind `broken`, `disconnected` or
 * `partial`. False for `retry` errors and for anything that is not a transport error.
 */
export function shouldReconnect(err: unknown): boolean {
  return isTransportError(err) && err.kind !== "retry";
}
