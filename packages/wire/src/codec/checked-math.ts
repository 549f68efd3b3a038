import { WireError } from "../errors.js";

/** Largest u64 value, `2^64 - 1`. */
export const U64_MAX = 0xffff_ffff_ffff_ffffn;

/**
 * Reject `base + len` that does not fit in a u64 (rust-vmm `checked_add` rule).
 * @throws WireError `OVERFLOW` naming `request` and the two fields.
 */
export function checkNoOverflow(request: string, base: bigint, len: bigint, what: string): void {
  if (base + len > U64_MAX) {
    throw new WireError("OVERFLOW", `${request}: ${what} 0x${base.toString(16)} + 0x${len.toString(16)} overflows u64`, {
      request,
      actual: base + len,
      expected: U64_MAX,
    });
  }
}

/**
 * @param message - built only on failure (keeps the hot path free of string formatting).
 * @throws WireError `BAD_VALUE` with `message()` when `ok` is false.
 */
export function checkValue(ok: boolean, request: string, message: () => string, actual?: number | bigint): void {
  if (!ok) {
    throw new WireError("BAD_VALUE", `${request}: ${message()}`, actual === undefined ? { request } : { request, actual });
  }
}
