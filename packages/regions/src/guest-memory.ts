/**
 * The consumer interface for *accessing* guest memory (vm-memory's design: an interface for access,
 * not for management). Virtqueues, the translation fallback and devices depend only on this type.
 *
 * @module
 */
import type { GuestAddress, UserAddress } from "./guest-address.js";

/**
 * A host view of part of guest memory, as returned by {@link GuestMemory.translate}.
 *
 * `bytes` is a live view over the mapping (not a copy); it stays valid until the memory table
 * changes (SET_MEM_TABLE, REM_MEM_REG, unmap, reset). It may be **shorter** than requested when
 * the range crosses into another region: translate the remainder with a second call.
 */
export interface HostSpan {
  /** Live bytes of guest memory starting at the requested address. Length >= 1. */
  readonly bytes: Uint8Array;
  /** False when the span is mapped read-only (a read-only SHMEM mapping): writes must not happen. */
  readonly writable: boolean;
}

/**
 * Where a translation landed, filled in place by {@link GuestMemory.translateInto} so that a hot loop
 * allocates nothing: the requested address is `view[offset]`, and `length` bytes from there are
 * mapped. Valid, like {@link HostSpan.bytes}, until the memory table changes.
 */
export interface HostWindow {
  /** A live view of the mapping (it may begin before the requested address and run past the range). */
  view: Uint8Array;
  /** Index in `view` of the requested address. */
  offset: number;
  /** Bytes mapped from `offset` on: >= 1 and at most the requested length (shorter where a region ends). */
  length: number;
  /** False when the mapping is read-only: writes must not happen. */
  writable: boolean;
}

/**
 * Why a translation failed. `unmapped` means the address lies outside every region this side knows
 * (e.g. in another device's VIRTIO Shared Memory Region): the translation fallback can serve it.
 */
export type TranslateMiss =
  | {
      readonly kind: "unmapped";
      readonly addr: bigint;
      /**
       * Where the next translatable range above `addr` starts (2^64 when there is none), when the
       * implementation knows it; lets a caller size the untranslatable run in one step.
       */
      readonly next?: bigint;
    }
  | { readonly kind: "overflow"; readonly addr: bigint; readonly len: bigint };

/** Result of a translation: a span, or a typed miss (never an exception for a miss). */
export type TranslateResult = { readonly ok: true; readonly span: HostSpan } | { readonly ok: false; readonly miss: TranslateMiss };

/**
 * Read/write/translate access to guest memory. Implementations: the back-end memory table and the
 * front-end guest RAM + shared memory regions (`@vhostkit/regions`), and the MEM_READ/MEM_WRITE
 * fallback (`@vhostkit/fallback`).
 */
export interface GuestMemory {
  /**
   * Host view of `[addr, addr + len)` in guest-physical space, possibly shorter than `len`.
   * `len` is in bytes and must be > 0. Never throws for unmapped addresses: returns a miss.
   */
  translate(addr: GuestAddress, len: number): TranslateResult;
  /**
   * Optional fast path: `translate` for an address that is a safe integer (0 <= addr < 2^53),
   * passed as a number so that hot loops (the virtqueue segment cursor) need no BigInt arithmetic.
   * Must return what `translate(BigInt(addr), len)` returns. Callers use it only for such addresses.
   */
  translateNumber?(addr: number, len: number): TranslateResult;
  /**
   * Optional allocation-free fast path: {@link GuestMemory.translateNumber} written into `out`.
   * Returns true on a hit (`out` filled); false on any miss, leaving `out` as it was: call
   * `translateNumber` or `translate` for the miss's details. Callers use it only for safe-integer addresses.
   */
  translateInto?(addr: number, len: number, out: HostWindow): boolean;
  /**
   * Copies `dst.length` bytes from guest-physical `addr` into `dst`. Crosses region boundaries.
   * Asynchronous because a fallback implementation may have to ask the front-end.
   * @throws RegionError (or FallbackError) with code `UNMAPPED` / `OUT_OF_BOUNDS` when any part of
   *   the range is not readable; nothing is partially reported as success.
   */
  read(addr: GuestAddress, dst: Uint8Array): Promise<void>;
  /**
   * Copies `src` into guest-physical memory at `addr`. All or nothing with respect to the checks:
   * the whole range is validated (mapped, writable) before any byte is written.
   * @throws RegionError (or FallbackError) with code `UNMAPPED` / `READ_ONLY` / `OUT_OF_BOUNDS`.
   */
  write(addr: GuestAddress, src: Uint8Array): Promise<void>;
  /**
   * Optional: true when every byte of `[addr, addr + len)` can be accessed through `read`/`write`,
   * directly or through a fallback (a MEM_READ/MEM_WRITE channel answers `true` for ranges outside
   * its table, since only the front-end knows). Without it, reachability means `translate` covers
   * the range.
   */
  reachable?(addr: GuestAddress, len: number): boolean;
  /**
   * Host view of a ring structure at a front-end virtual address (SET_VRING_ADDR), or a miss.
   * Optional: only back-end memory tables know user addresses.
   */
  translateUser?(addr: UserAddress, len: number): TranslateResult;
}
