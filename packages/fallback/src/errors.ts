/**
 * The error type of `@vhostkit/fallback`.
 * @module
 */
import { VhostUserError, isVhostUserError, type ErrorDetail } from "@vhostkit/wire";

/**
 * Why a fallback access failed. The first three match `@vhostkit/regions`' codes for the same
 * conditions, so device code can branch on `err.code` whichever memory served it.
 * - `UNMAPPED`: the address is outside the memory table and no MEM_READ/MEM_WRITE channel exists
 *   (not negotiated, or no back-end channel yet).
 * - `READ_ONLY`: a direct part of a write lies in read-only memory (nothing was written).
 * - `OUT_OF_BOUNDS`: the access itself is malformed (length 0 or address wrap).
 * - `REMOTE_FAILED`: the front-end refused or could not serve a MEM_READ/MEM_WRITE.
 */
export type FallbackErrorCode = "UNMAPPED" | "READ_ONLY" | "OUT_OF_BOUNDS" | "REMOTE_FAILED";

/** Error thrown by {@link FallbackMemory.read} / {@link FallbackMemory.write}; `cause` keeps the underlying error. */
export class FallbackError extends VhostUserError<FallbackErrorCode> {
  /**
   * @param code - reason.
   * @param message - lowercase message naming the address and length in hex.
   * @param detail - structured detail (`offset` = guest address).
   * @param options - `cause`.
   */
  constructor(code: FallbackErrorCode, message: string, detail: ErrorDetail = {}, options?: { cause?: unknown }) {
    super(code, message, detail, options);
  }
}

/** True when `x` is a {@link FallbackError} (brand check plus class name). */
export function isFallbackError(x: unknown): x is FallbackError {
  return isVhostUserError(x) && x.name === "FallbackError";
}
