/**
 * u64 arithmetic with explicit overflow checks, and page-alignment helpers.
 * @module
 */
import { pageSize } from "@vhostkit/transport/sys";
import { RegionError, type RegionErrorDetail } from "./errors.js";

/** Largest u64 value. */
export const U64_MAX = (1n << 64n) - 1n;

/** `a + b` as a u64. @throws RegionError `OVERFLOW` when the sum wraps u64. */
export function addU64(a: bigint, b: bigint, what: string, detail: RegionErrorDetail = {}): bigint {
  const sum = a + b;
  if (a < 0n || b < 0n || sum > U64_MAX) {
    throw new RegionError("OVERFLOW", `${what}: 0x${a.toString(16)} + 0x${b.toString(16)} wraps u64`, detail);
  }
  return sum;
}

/** `value` as a JS number for an mmap length. @throws RegionError `OVERFLOW` above 2^53 - 1. */
export function toLength(value: bigint, what: string, detail: RegionErrorDetail = {}): number {
  if (value < 0n || value > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new RegionError("OVERFLOW", `${what}: 0x${value.toString(16)} does not fit a safe integer`, detail);
  }
  return Number(value);
}

let page: bigint | undefined;

/** The host page size as a bigint (read once). */
export function pageBytes(): bigint {
  page ??= BigInt(pageSize());
  return page;
}

/** @throws RegionError `MISALIGNED` unless `value` is a multiple of the host page size. */
export function requirePageAligned(value: bigint, what: string, detail: RegionErrorDetail = {}): void {
  const page = pageBytes();
  if (value % page !== 0n) {
    throw new RegionError("MISALIGNED", `${what} 0x${value.toString(16)} is not a multiple of the page size 0x${page.toString(16)}`, {
      ...detail,
      expected: page,
      actual: value,
    });
  }
}

/** True when `[a, a + aLen)` and `[b, b + bLen)` share at least one byte (lengths > 0). */
export function rangesOverlap(a: bigint, aLen: bigint, b: bigint, bLen: bigint): boolean {
  return a < b + bLen && b < a + aLen;
}
