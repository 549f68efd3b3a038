/**
 * Lookups in address-sorted, non-overlapping range lists, and range copies built on
 * {@link GuestMemory.translate}, shared by every `GuestMemory` implementation here.
 * @module
 */
import type { GuestAddress } from "./guest-address.js";
import type { GuestMemory, HostSpan, TranslateResult } from "./guest-memory.js";
import { RegionError } from "./errors.js";
import type { HostMapping } from "./host-mapping.js";

const U64_HALF = 1n << 63n;
const U64_END = 1n << 64n;

/** A range `[start, start + len)` in some address space. @internal */
export interface Ranged {
  readonly start: bigint;
  readonly len: bigint;
  /** `start + len`, kept so lookups compare without BigInt arithmetic (which allocates). */
  readonly end: bigint;
}

/** The entry of `sorted` (ascending, non-overlapping) containing `addr`, or undefined. @internal */
export function findContaining<T extends Ranged>(sorted: readonly T[], addr: bigint): T | undefined {
  let lo = 0;
  let hi = sorted.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const e = sorted[mid]!;
    if (addr < e.start) hi = mid - 1;
    else if (addr >= e.end) lo = mid + 1;
    else return e;
  }
  return undefined;
}

/**
 * A {@link Ranged} whose bounds are also kept as numbers, for lookups of safe-integer addresses
 * without BigInt: exact below 2^53; above it `Number()` rounds but keeps the order, and no
 * safe-integer address can fall inside such a range by mistake. @internal
 */
export interface NumberRanged extends Ranged {
  readonly startN: number;
  readonly endN: number;
}

/** {@link findContaining} for a safe-integer `addr` (>= 0) over {@link NumberRanged} entries. @internal */
export function findContainingNumber<T extends NumberRanged>(sorted: readonly T[], addr: number): T | undefined {
  let lo = 0;
  let hi = sorted.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const e = sorted[mid]!;
    if (addr < e.startN) hi = mid - 1;
    else if (addr >= e.endN) lo = mid + 1;
    else return e;
  }
  return undefined;
}

/** Index at which `start` keeps `sorted` ascending. @internal */
export function insertionIndex(sorted: readonly Ranged[], start: bigint): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid]!.start < start) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Validates `len` and `addr + len` for a translate call; a miss when out of range. @internal */
export function translateArgsMiss(addr: bigint, len: number): TranslateResult | undefined {
  // Below 2^63 no safe-integer length can wrap, so the common case needs no BigInt arithmetic.
  if (!Number.isSafeInteger(len) || len <= 0 || addr < 0n || (addr >= U64_HALF && addr + BigInt(len) > U64_END)) {
    return { ok: false, miss: { kind: "overflow", addr, len: BigInt(Number.isSafeInteger(len) ? len : 0) } };
  }
  return undefined;
}

/** A span over `[offset, offset + want)` of `host`, clamped to the end of its view chunk. @internal */
export function spanOf(host: HostMapping, offset: number, want: number, writable: boolean): HostSpan {
  return { bytes: host.bytesAt(offset, want), writable };
}

/**
 * Translates all of `[addr, addr + len)` into spans before any byte is copied (all or nothing).
 * @throws RegionError `UNMAPPED`, `OVERFLOW` or (`forWrite`) `READ_ONLY`.
 * @internal
 */
export function collectSpans(translate: (addr: GuestAddress, len: number) => TranslateResult, addr: GuestAddress, len: number, forWrite: boolean): HostSpan[] {
  const spans: HostSpan[] = [];
  let done = 0;
  while (done < len) {
    const at = (addr + BigInt(done)) as GuestAddress;
    const r = translate(at, len - done);
    // An empty span makes no progress: treat it as a miss (a faulty GuestMemory must not hang this).
    if (!r.ok || r.span.bytes.length === 0) {
      const code = !r.ok && r.miss.kind === "overflow" ? "OVERFLOW" : "UNMAPPED";
      throw new RegionError(code, `guest range 0x${addr.toString(16)}+0x${len.toString(16)} is not backed at 0x${at.toString(16)}`, {
        guestPhysAddr: at,
        len: BigInt(len),
      });
    }
    if (forWrite && !r.span.writable) {
      throw new RegionError("READ_ONLY", `write to read-only guest memory at 0x${at.toString(16)}`, { guestPhysAddr: at, len: BigInt(len) });
    }
    // A span longer than asked for is clipped (the interface allows shorter ones only).
    const span = r.span.bytes.length > len - done ? { bytes: r.span.bytes.subarray(0, len - done), writable: r.span.writable } : r.span;
    spans.push(span);
    done += span.bytes.length;
  }
  return spans;
}

/**
 * All of guest-physical `[addr, addr + len)` of `memory` as host views, in order (several when the
 * range crosses regions), checked before anything is touched: for copying straight to or from guest
 * memory without an intermediate buffer. Use the views at once: a later unmap invalidates them.
 * @param forWrite - also require every part to be writable.
 * @throws RegionError `UNMAPPED` (some part does not translate), `OVERFLOW` (bad range),
 *   `READ_ONLY` (`forWrite` and a read-only part).
 */
export function translateRange(memory: Pick<GuestMemory, "translate">, addr: GuestAddress, len: number, forWrite: boolean): HostSpan[] {
  return collectSpans((a, l) => memory.translate(a, l), addr, len, forWrite);
}

/**
 * Reads `dst.length` bytes at `addr` through `translate`; checks everything first. Synchronous
 * inside (no await between the checks and the copy), so no unmap can interleave.
 * @internal
 */
export function readThrough(translate: (addr: GuestAddress, len: number) => TranslateResult, addr: GuestAddress, dst: Uint8Array): Promise<void> {
  try {
    let at = 0;
    if (dst.length > 0) {
      for (const s of collectSpans(translate, addr, dst.length, false)) {
        dst.set(s.bytes, at);
        at += s.bytes.length;
      }
    }
    return Promise.resolve();
  } catch (e) {
    return Promise.reject(e as Error);
  }
}

/** Writes `src` at `addr` through `translate`; checks mapped + writable for all of it first. @internal */
export function writeThrough(translate: (addr: GuestAddress, len: number) => TranslateResult, addr: GuestAddress, src: Uint8Array): Promise<void> {
  try {
    let at = 0;
    if (src.length > 0) {
      for (const s of collectSpans(translate, addr, src.length, true)) {
        s.bytes.set(src.subarray(at, at + s.bytes.length));
        at += s.bytes.length;
      }
    }
    return Promise.resolve();
  } catch (e) {
    return Promise.reject(e as Error);
  }
}
