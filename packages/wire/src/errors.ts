/**
 * Errors shared by every vhostkit package.
 *
 * Every package throws a subclass of {@link VhostUserError} with a string-literal `code` union, so
 * callers branch on `err.code` rather than on message text. {@link isVhostUserError} checks a
 * `Symbol.for` brand instead of `instanceof`, so it works across duplicated copies of the package.
 *
 * @module
 */

const BRAND: unique symbol = Symbol.for("@vhostkit/VhostUserError") as never;

/** Structured detail attached to an error: request name, expected vs actual sizes, offsets. */
export interface ErrorDetail {
  /** Spec name of the request involved, e.g. `"SET_VRING_ADDR"`. */
  readonly request?: string;
  /** What the check expected (a size in bytes, a count, a value). */
  readonly expected?: number | bigint | string;
  /** What was actually found. */
  readonly actual?: number | bigint | string;
  /** Byte offset (into a frame or a region) where the problem was found. */
  readonly offset?: number | bigint;
}

/**
 * Base class of every error vhostkit throws. Subclasses narrow `code` to their own union.
 *
 * @typeParam C - the string-literal union of codes this error class may carry.
 */
export class VhostUserError<C extends string = string> extends Error {
  /** Machine-readable reason; stable across releases. */
  readonly code: C;
  /** Structured detail for logs and tests. */
  readonly detail: ErrorDetail;
  /** @internal brand checked by {@link isVhostUserError}. */
  readonly [BRAND] = true;

  /**
   * @param code - stable machine-readable reason.
   * @param message - lowercase human message naming the request, size and offset (hex).
   * @param detail - structured detail.
   * @param options - standard `cause` for wrapped errors.
   */
  constructor(code: C, message: string, detail: ErrorDetail = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.detail = detail;
    this.name = new.target.name;
  }
}

/** True when `x` is any vhostkit error (any package, any copy of the package). */
export function isVhostUserError(x: unknown): x is VhostUserError {
  return typeof x === "object" && x !== null && (x as Record<symbol, unknown>)[BRAND] === true;
}

/** Reasons a frame or payload is rejected by `@vhostkit/wire` (syntax-level validation only). */
export type WireErrorCode =
  | "TRUNCATED"
  | "BAD_VERSION"
  | "RESERVED_FLAGS"
  | "TOO_LARGE"
  | "BAD_SIZE"
  | "UNKNOWN_REQUEST"
  | "OVERFLOW"
  | "NONZERO_PADDING"
  | "BAD_VALUE";

/**
 * Error thrown by every `@vhostkit/wire` decoder and encoder. `detail` carries the request name,
 * expected vs actual size or value, and the byte offset where the problem was found.
 */
export class WireError extends VhostUserError<WireErrorCode> {}

/** True when `x` is a {@link WireError} (brand check plus class name, works across package copies). */
export function isWireError(x: unknown): x is WireError {
  return isVhostUserError(x) && x.name === "WireError";
}
