/**
 * An in-memory {@link GuestMemory} over separate `ArrayBuffer`s, one per region, for tests.
 *
 * @module
 */
import type { GuestAddress, GuestMemory, TranslateResult, UserAddress } from "@vhostkit/regions";

/** One region of an {@link ArrayGuestMemory}. */
export interface ArrayRegionSpec {
  /** Guest-physical start address. */
  readonly guestAddr: bigint;
  /** Size in bytes. */
  readonly size: number;
  /** Front-end virtual start address for `translateUser` (default: same as `guestAddr`). */
  readonly userAddr?: bigint;
  /** False for a read-only region (default true). */
  readonly writable?: boolean;
  /**
   * False for a region that `translate` does not know (a miss, as for another device's shared
   * memory) but `read` / `write` still serve — a stand-in for the MEM_READ/MEM_WRITE fallback.
   * Default true.
   */
  readonly mapped?: boolean;
}

/** A region of an {@link ArrayGuestMemory} with its backing bytes. */
export interface ArrayRegion extends ArrayRegionSpec {
  /** The region's own bytes (a separate ArrayBuffer: regions are never contiguous in the host). */
  readonly bytes: Uint8Array;
}

/**
 * Guest memory made of separate ArrayBuffers. Regions must not overlap. Each region's buffer starts
 * at a 16-aligned host offset, so ring views have the alignment of their guest addresses.
 * Counts calls so tests can assert on translation traffic.
 */
export class ArrayGuestMemory implements GuestMemory {
  /** The regions, in the order given. */
  readonly regions: readonly ArrayRegion[];
  /** Number of `read` + `write` calls served (the fallback path). */
  remoteCalls = 0;

  /** @param specs - the regions; each gets a zeroed buffer of `size` bytes. */
  constructor(specs: readonly ArrayRegionSpec[]) {
    this.regions = specs.map((s) => ({ ...s, bytes: new Uint8Array(s.size) }));
  }

  #find(addr: bigint, user: boolean): ArrayRegion | undefined {
    for (const r of this.regions) {
      const base = user ? (r.userAddr ?? r.guestAddr) : r.guestAddr;
      if (addr >= base && addr < base + BigInt(r.size)) return r;
    }
    return undefined;
  }

  #translate(addr: bigint, len: number, user: boolean): TranslateResult {
    if (addr + BigInt(len) > 1n << 64n) return { ok: false, miss: { kind: "overflow", addr, len: BigInt(len) } };
    const r = this.#find(addr, user);
    if (r === undefined || r.mapped === false) return { ok: false, miss: { kind: "unmapped", addr } };
    const off = Number(addr - (user ? (r.userAddr ?? r.guestAddr) : r.guestAddr));
    const n = Math.min(len, r.size - off);
    return { ok: true, span: { bytes: r.bytes.subarray(off, off + n), writable: r.writable !== false } };
  }

  /** Host view of `[addr, addr + len)`, shortened at the end of a region; a miss outside or in unmapped regions. */
  translate(addr: GuestAddress, len: number): TranslateResult {
    return this.#translate(addr, len, false);
  }

  /** As {@link translate}, for front-end virtual addresses (`userAddr` of each region). */
  translateUser(addr: UserAddress, len: number): TranslateResult {
    return this.#translate(addr, len, true);
  }

  #each(addr: bigint, len: number, write: boolean, fn: (r: ArrayRegion, off: number, n: number, done: number) => void): void {
    let done = 0;
    while (done < len) {
      const a = addr + BigInt(done);
      const r = this.#find(a, false);
      if (r === undefined) throw new RangeError(`guest address 0x${a.toString(16)} is unmapped`);
      if (write && r.writable === false) throw new RangeError(`guest address 0x${a.toString(16)} is read-only`);
      const off = Number(a - r.guestAddr);
      const n = Math.min(len - done, r.size - off);
      fn(r, off, n, done);
      done += n;
    }
  }

  /** Copies guest memory into `dst`, across regions, mapped or not. @throws RangeError when unmapped. */
  async read(addr: GuestAddress, dst: Uint8Array): Promise<void> {
    this.remoteCalls++;
    this.readSync(addr, dst);
  }

  /** Copies `src` into guest memory, all-or-nothing. @throws RangeError when unmapped or read-only. */
  async write(addr: GuestAddress, src: Uint8Array): Promise<void> {
    this.remoteCalls++;
    this.writeSync(addr, src);
  }

  /** Synchronous {@link read}. */
  readSync(addr: bigint, dst: Uint8Array): void {
    this.#each(addr, dst.length, false, (r, off, n, done) => dst.set(r.bytes.subarray(off, off + n), done));
  }

  /** Synchronous {@link write}; validates the whole range before writing. */
  writeSync(addr: bigint, src: Uint8Array): void {
    this.#each(addr, src.length, true, () => undefined);
    this.#each(addr, src.length, true, (r, off, n, done) => r.bytes.set(src.subarray(done, done + n), off));
  }
}
