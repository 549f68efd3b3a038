/**
 * The back-end memory table: SET_MEM_TABLE, ADD_MEM_REG, REM_MEM_REG and GET_MAX_MEM_SLOTS
 * (docs/protocol.md#memory-table), with translation of guest-physical and front-end virtual addresses
 * (docs/protocol.md#address-spaces).
 * @module
 */
import { describeErrno, fstatSize, getSeals, mmanErrno, SEAL } from "@vhostkit/transport/sys";
import { addU64, rangesOverlap, requirePageAligned, toLength } from "./checked-math.js";
import { RegionError, type RegionErrorDetail } from "./errors.js";
import { closeOwned, takeFd, type FdInput } from "./fd-input.js";
import { guestAddress, userAddress, type GuestAddress, type UserAddress } from "./guest-address.js";
import type { GuestMemory, HostWindow, TranslateResult } from "./guest-memory.js";
import { mapShared, unmapHost, type HostMapping } from "./host-mapping.js";
import { findContaining, findContainingNumber, insertionIndex, readThrough, spanOf, translateArgsMiss, writeThrough } from "./span-lookup.js";

const U64_END = 1n << 64n;

/** Default GET_MAX_MEM_SLOTS answer: 509, as rust-vmm and newer libvhost-user back-ends report. */
export const DEFAULT_MAX_MEM_SLOTS = 509;

/**
 * One memory region as VhostUserMemoryRegion describes it (docs/protocol.md#payload-layouts), u64 fields as
 * bigint so the wire codec's decoded values map onto it field by field.
 */
export interface MemoryRegionDescriptor {
  /** `guest_phys_addr`: guest-physical address of the first byte. */
  readonly guestPhysAddr: bigint;
  /** `memory_size`: length in bytes, > 0. */
  readonly memorySize: bigint;
  /** `userspace_addr`: the front-end's (possibly synthetic) virtual address of the first byte. */
  readonly userspaceAddr: bigint;
  /** `mmap_offset`: offset of the region inside the fd, bytes; must be page-aligned here. */
  readonly mmapOffset: bigint;
}

/** A region with the fd that came with it (SET_MEM_TABLE: one per region; ADD_MEM_REG: exactly one). */
export interface MemoryRegionWithFd extends MemoryRegionDescriptor {
  /** The region's fd. Ownership passes to the table (see {@link FdInput}). */
  readonly fd: FdInput;
}

/** A mapped region as the table reports it (branded addresses). */
export interface MappedRegion {
  /** Guest-physical address of the first byte. */
  readonly guestPhysAddr: GuestAddress;
  /** Length in bytes. */
  readonly memorySize: bigint;
  /** Front-end virtual address of the first byte. */
  readonly userspaceAddr: UserAddress;
  /** Offset inside the fd the mapping was made from. */
  readonly mmapOffset: bigint;
}

/** Options of {@link MemoryTable}. */
export interface MemoryTableOptions {
  /** GET_MAX_MEM_SLOTS answer and the cap on live regions (default {@link DEFAULT_MAX_MEM_SLOTS}). */
  readonly maxSlots?: number;
  /**
   * Refuse regions backed by a regular file (a memfd, a file in /dev/shm or hugetlbfs) that is not
   * sealed with `F_SEAL_SHRINK` (default `false`). A front-end that truncates such a file after the
   * mmap makes the next access to it a SIGBUS, which kills a JavaScript process; the seal rules
   * that out. Off by default because QEMU's `memory-backend-file` cannot be sealed (its
   * `memory-backend-memfd`, with the default `seal=on`, and vhostkit's own front-end are sealed).
   */
  readonly requireSealedFds?: boolean;
}

interface Entry {
  readonly start: bigint; // gpa or uaddr, per index
  readonly len: bigint;
  readonly end: bigint;
  readonly startN: number;
  readonly endN: number;
  readonly region: MappedRegion;
  readonly host: HostMapping;
}

interface Mapped {
  readonly region: MappedRegion;
  readonly host: HostMapping;
}

function describe(r: MemoryRegionDescriptor): string {
  return `gpa 0x${r.guestPhysAddr.toString(16)} size 0x${r.memorySize.toString(16)} uaddr 0x${r.userspaceAddr.toString(16)}`;
}

/** Syntax checks of one region (zero size, wraps, alignment). */
function checkRegion(r: MemoryRegionDescriptor, request: string): void {
  const detail: RegionErrorDetail = { request, guestPhysAddr: r.guestPhysAddr, len: r.memorySize };
  if (r.memorySize === 0n) throw new RegionError("ZERO_SIZE", `${request}: region ${describe(r)} has size 0`, detail);
  for (const [v, name] of [
    [r.guestPhysAddr, "guest_phys_addr"],
    [r.userspaceAddr, "userspace_addr"],
    [r.mmapOffset, "mmap_offset"],
  ] as const) {
    addU64(v, r.memorySize, `${request}: ${name} + memory_size`, detail);
  }
  toLength(r.memorySize, `${request}: memory_size`, detail);
  requirePageAligned(r.mmapOffset, `${request}: mmap_offset`, detail);
}

function sameRegion(a: MemoryRegionDescriptor, b: MemoryRegionDescriptor): boolean {
  return a.guestPhysAddr === b.guestPhysAddr && a.memorySize === b.memorySize && a.userspaceAddr === b.userspaceAddr;
}

/** Overlap / duplicate check of `r` against `others` (GPA space and uaddr space). */
function checkAgainst(r: MemoryRegionDescriptor, others: readonly MemoryRegionDescriptor[], request: string): void {
  for (const o of others) {
    const detail: RegionErrorDetail = { request, guestPhysAddr: r.guestPhysAddr, len: r.memorySize };
    if (sameRegion(r, o)) throw new RegionError("DUPLICATE", `${request}: region ${describe(r)} is already in the table`, detail);
    if (rangesOverlap(r.guestPhysAddr, r.memorySize, o.guestPhysAddr, o.memorySize)) {
      throw new RegionError("OVERLAP", `${request}: region ${describe(r)} overlaps ${describe(o)} in guest-physical space`, detail);
    }
    if (rangesOverlap(r.userspaceAddr, r.memorySize, o.userspaceAddr, o.memorySize)) {
      throw new RegionError("OVERLAP", `${request}: region ${describe(r)} overlaps ${describe(o)} in user-address space`, detail);
    }
  }
}

/** Maps one validated region from its fd (which the caller still owns and closes). */
function mapRegion(r: MemoryRegionDescriptor, fd: number, request: string, requireSealed: boolean): Mapped {
  const detail: RegionErrorDetail = { request, guestPhysAddr: r.guestPhysAddr, len: r.memorySize };
  if (fd < 0) throw new RegionError("BAD_FD", `${request}: region ${describe(r)} has no usable fd`, detail);
  const st = fstatSize(fd);
  if (st === undefined) {
    const errno = mmanErrno();
    throw new RegionError("BAD_FD", `${request}: fstat of the region fd: ${describeErrno(errno)}`, detail, { errno, syscall: "fstat" });
  }
  if (st.regular && requireSealed) {
    const seals = getSeals(fd);
    if (seals < 0 || (seals & SEAL.SHRINK) === 0)
      throw new RegionError(
        "UNSEALED",
        `${request}: region ${describe(r)} is a file the front-end can still shrink (no F_SEAL_SHRINK): an access after a truncate would be SIGBUS`,
        detail,
      );
  }
  const end = r.mmapOffset + r.memorySize;
  if (st.regular && end > st.size) {
    throw new RegionError(
      "OUT_OF_BOUNDS",
      `${request}: mmap_offset + memory_size 0x${end.toString(16)} is past the end of the file (0x${st.size.toString(16)})`,
      { ...detail, expected: st.size, actual: end },
    );
  }
  // rust-vmm maps at file offset mmap_offset directly (libvhost-user maps from 0 and adds it);
  // mmap_offset is page-aligned (checked), so the two agree.
  const host = mapShared(fd, r.mmapOffset, Number(r.memorySize), true, detail);
  const region: MappedRegion = {
    guestPhysAddr: guestAddress(r.guestPhysAddr),
    memorySize: r.memorySize,
    userspaceAddr: userAddress(r.userspaceAddr),
    mmapOffset: r.mmapOffset,
  };
  return { region, host };
}

/**
 * The back-end's view of guest memory: the regions the front-end sent, each mmapped read-write
 * from its fd. Implements {@link GuestMemory} (guest-physical translation) and `translateUser`
 * (ring addresses from SET_VRING_ADDR).
 *
 * **Fds:** every method that takes fds takes ownership of all of them and closes each exactly once:
 * right after its mmap succeeded (the mapping keeps the file alive), or before the method throws.
 *
 * **Atomicity:** every method validates and maps everything new before it changes the table; when
 * it throws, the table is as it was and nothing new stays mapped.
 *
 * **Spans:** views returned by `translate`/`translateUser` stay valid until the region they view is
 * removed (REM_MEM_REG, SET_MEM_TABLE, `reset`, `dispose`) and no {@link MemoryTable.pin} taken
 * before the removal is still held; re-translate after a change. Pins let a back-end answer a
 * removal at once while queue handlers still hold views: the table stops translating into the
 * region immediately, the unmap waits for the last pin.
 */
export class MemoryTable implements GuestMemory, Disposable {
  readonly #maxSlots: number;
  readonly #requireSealed: boolean;
  #byGuest: Entry[] = [];
  #byUser: Entry[] = [];
  #disposed = false;
  /** Live pins per epoch: a pin taken at epoch e may hold views of mappings retired at epoch >= e. */
  readonly #pins = new Map<number, number>();
  /** Bumped at each retirement: pins taken afterwards cannot hold views of what was retired. */
  #epoch = 0;
  /** Mappings removed from the table while pins were held: unmapped when the last pin goes. */
  #retired: { readonly host: HostMapping; readonly epoch: number }[] = [];

  /** @throws RegionError `BAD_CONFIG` when `maxSlots` is not a positive integer. */
  constructor(options: MemoryTableOptions = {}) {
    this.#maxSlots = options.maxSlots ?? DEFAULT_MAX_MEM_SLOTS;
    this.#requireSealed = options.requireSealedFds ?? false;
    if (!Number.isSafeInteger(this.#maxSlots) || this.#maxSlots < 1)
      throw new RegionError("BAD_CONFIG", `maxSlots must be a positive integer, got ${this.#maxSlots}`);
  }

  /** GET_MAX_MEM_SLOTS answer: the most regions this table holds. */
  get maxSlots(): number {
    return this.#maxSlots;
  }

  /** Number of live regions. */
  get regionCount(): number {
    return this.#byGuest.length;
  }

  /** The live regions in guest-physical order. */
  regions(): readonly MappedRegion[] {
    return this.#byGuest.map((e) => e.region);
  }

  /**
   * Keep every mapping this table has now (and any added later) mapped until the returned release
   * runs, even if its region is removed meanwhile: removals still take effect in translation at
   * once, only their unmaps wait. For code that holds views across awaits (a queue handler).
   * @returns the release; idempotent. A removed mapping is unmapped once every pin taken before its
   * removal is released (pins taken later cannot view it), so overlapping pins never keep removed
   * mappings alive for good.
   */
  pin(): () => void {
    const epoch = this.#epoch;
    this.#pins.set(epoch, (this.#pins.get(epoch) ?? 0) + 1);
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      const left = (this.#pins.get(epoch) ?? 1) - 1;
      if (left > 0) this.#pins.set(epoch, left);
      else this.#pins.delete(epoch);
      this.#unmapUnpinned();
    };
  }

  /** Unmaps the retired mappings that no live pin can still view. */
  #unmapUnpinned(): void {
    let oldest = Infinity;
    for (const e of this.#pins.keys()) if (e < oldest) oldest = e;
    let n = 0;
    while (n < this.#retired.length && this.#retired[n]!.epoch < oldest) unmapHost(this.#retired[n++]!.host);
    if (n > 0) this.#retired = this.#retired.slice(n);
  }

  /** Mappings waiting for the last pin before they are unmapped (for tests and diagnostics). */
  get retiredCount(): number {
    return this.#retired.length;
  }

  #retire(host: HostMapping): void {
    if (this.#pins.size === 0) {
      unmapHost(host);
      return;
    }
    // Pins taken from now on cannot view it: only those of epochs <= this one hold it.
    this.#retired.push({ host, epoch: this.#epoch });
    this.#epoch++;
  }

  #alive(): void {
    if (this.#disposed) throw new RegionError("DISPOSED", "memory table was disposed");
  }

  #install(mapped: readonly Mapped[]): void {
    const entry = (start: bigint, m: Mapped): Entry => {
      const end = start + m.region.memorySize;
      return { start, len: m.region.memorySize, end, startN: Number(start), endN: Number(end), region: m.region, host: m.host };
    };
    const guest = mapped.map((m) => entry(m.region.guestPhysAddr, m));
    const user = mapped.map((m) => entry(m.region.userspaceAddr, m));
    this.#byGuest = guest.sort((a, b) => (a.start < b.start ? -1 : 1));
    this.#byUser = user.sort((a, b) => (a.start < b.start ? -1 : 1));
  }

  /** Maps every region (fds taken), all or nothing; closes every fd in every case. */
  #mapAll(regions: readonly MemoryRegionWithFd[], request: string): Mapped[] {
    const fds = regions.map((r) => takeFd(r.fd));
    const done: Mapped[] = [];
    try {
      regions.forEach((r, i) => done.push(mapRegion(r, fds[i]!, request, this.#requireSealed)));
      return done;
    } catch (e) {
      for (const m of done) unmapHost(m.host);
      throw e;
    } finally {
      for (const fd of fds) closeOwned(fd);
    }
  }

  /**
   * SET_MEM_TABLE: replaces the whole table with `regions`. The new table is validated and mapped
   * completely before the old one is unmapped, so a failure leaves the old table in place.
   * Takes ownership of every region's fd.
   * @throws RegionError `TOO_MANY`, `ZERO_SIZE`, `OVERFLOW`, `MISALIGNED`, `DUPLICATE`,
   *   `OVERLAP`, `BAD_FD`, `UNSEALED`, `OUT_OF_BOUNDS`, `MMAP_FAILED`, `DISPOSED`.
   */
  setMemTable(regions: readonly MemoryRegionWithFd[]): void {
    const request = "SET_MEM_TABLE";
    try {
      this.#alive();
      if (regions.length > this.#maxSlots)
        throw new RegionError("TOO_MANY", `${request}: ${regions.length} regions, at most ${this.#maxSlots}`, {
          request,
          expected: this.#maxSlots,
          actual: regions.length,
        });
      regions.forEach((r, i) => {
        checkRegion(r, request);
        checkAgainst(r, regions.slice(0, i), request);
      });
    } catch (e) {
      for (const r of regions) closeOwned(takeFd(r.fd));
      throw e;
    }
    const mapped = this.#mapAll(regions, request);
    const old = this.#byGuest;
    this.#install(mapped);
    for (const e of old) this.#retire(e.host);
  }

  /**
   * ADD_MEM_REG: adds one region. Takes ownership of its fd.
   * @throws RegionError `TOO_MANY`, `ZERO_SIZE`, `OVERFLOW`, `MISALIGNED`, `DUPLICATE`, `OVERLAP`,
   *   `BAD_FD`, `UNSEALED`, `OUT_OF_BOUNDS`, `MMAP_FAILED`, `DISPOSED`.
   */
  addRegion(region: MemoryRegionWithFd): void {
    const request = "ADD_MEM_REG";
    try {
      this.#alive();
      if (this.#byGuest.length >= this.#maxSlots)
        throw new RegionError("TOO_MANY", `${request}: all ${this.#maxSlots} memory slots are in use`, { request, expected: this.#maxSlots });
      checkRegion(region, request);
      checkAgainst(region, this.regions(), request);
    } catch (e) {
      closeOwned(takeFd(region.fd));
      throw e;
    }
    const [m] = this.#mapAll([region], request);
    this.#install([...this.#byGuest, m!]);
  }

  /**
   * REM_MEM_REG: removes the region matching `region` on guest address, user address and size
   * (`mmapOffset` is not compared, as QEMU and rust-vmm do). Closes every fd in `fds` (REM carries
   * none; any that came are closed unused).
   * @throws RegionError `NOT_FOUND`, `DISPOSED`.
   */
  removeRegion(region: Omit<MemoryRegionDescriptor, "mmapOffset"> & { readonly mmapOffset?: bigint }, fds: readonly FdInput[] = []): void {
    for (const fd of fds) closeOwned(takeFd(fd));
    this.#alive();
    const i = this.#byGuest.findIndex((e) => sameRegion(e.region, { ...region, mmapOffset: 0n }));
    const e = this.#byGuest[i];
    if (e === undefined) {
      throw new RegionError("NOT_FOUND", `REM_MEM_REG: no region ${describe({ ...region, mmapOffset: 0n })}`, {
        request: "REM_MEM_REG",
        guestPhysAddr: region.guestPhysAddr,
        len: region.memorySize,
      });
    }
    this.#install(this.#byGuest.filter((_, j) => j !== i));
    this.#retire(e.host);
  }

  /** Disconnect / reset: unmaps every region (once no pin is held). The table stays usable. */
  reset(): void {
    const old = this.#byGuest;
    this.#install([]);
    for (const e of old) this.#retire(e.host);
  }

  /** Unmaps everything; later calls that add regions fail with `DISPOSED` (closing their fds). Idempotent. */
  dispose(): void {
    this.reset();
    this.#disposed = true;
  }

  /** Same as {@link MemoryTable.dispose}. */
  [Symbol.dispose](): void {
    this.dispose();
  }

  /**
   * Host view of guest-physical `[addr, addr + len)`, clamped to the end of the region containing
   * `addr` (a buffer crossing two regions needs two calls). `unmapped` miss outside every region,
   * `overflow` miss for `len` <= 0 or a range that wraps u64.
   */
  translate(addr: GuestAddress, len: number): TranslateResult {
    return lookup(this.#byGuest, addr, len);
  }

  /**
   * {@link MemoryTable.translate} for a safe-integer `addr`, without BigInt arithmetic (the hot path).
   * @throws RangeError when `addr` is not a safe integer >= 0 (a caller's bug, not a miss).
   */
  translateNumber(addr: number, len: number): TranslateResult {
    if (!(Number.isSafeInteger(addr) && addr >= 0)) throw new RangeError(`translateNumber: address ${addr} is not a safe integer >= 0`);
    const e = Number.isSafeInteger(len) && len > 0 ? findContainingNumber(this.#byGuest, addr) : undefined;
    if (e === undefined) return this.translate(BigInt(addr) as GuestAddress, len); // misses and bad lengths: the one slow path
    return { ok: true, span: spanOf(e.host, addr - e.startN, len, true) };
  }

  /**
   * {@link MemoryTable.translateNumber} written into `out` (no allocation); false on a miss, `out` untouched.
   * @throws RangeError when `addr` is not a safe integer >= 0 (a caller's bug, not a miss).
   */
  translateInto(addr: number, len: number, out: HostWindow): boolean {
    if (!(Number.isSafeInteger(addr) && addr >= 0)) throw new RangeError(`translateInto: address ${addr} is not a safe integer >= 0`);
    const e = Number.isSafeInteger(len) && len > 0 ? findContainingNumber(this.#byGuest, addr) : undefined;
    if (e === undefined) return false;
    e.host.windowAt(addr - e.startN, len, out);
    out.writable = true;
    return true;
  }

  /** Host view of a ring at front-end virtual `addr` (SET_VRING_ADDR), clamped like `translate`. */
  translateUser(addr: UserAddress, len: number): TranslateResult {
    return lookup(this.#byUser, addr, len);
  }

  /**
   * Copies guest memory at `addr` into `dst`, across regions; the whole range is checked first.
   * @throws RegionError `UNMAPPED`, `OVERFLOW`.
   */
  read(addr: GuestAddress, dst: Uint8Array): Promise<void> {
    return readThrough((a, l) => this.translate(a, l), addr, dst);
  }

  /**
   * Copies `src` into guest memory at `addr`, across regions; the whole range is checked first.
   * @throws RegionError `UNMAPPED`, `OVERFLOW`.
   */
  write(addr: GuestAddress, src: Uint8Array): Promise<void> {
    return writeThrough((a, l) => this.translate(a, l), addr, src);
  }
}

function lookup(sorted: readonly Entry[], addr: bigint, len: number): TranslateResult {
  const bad = translateArgsMiss(addr, len);
  if (bad !== undefined) return bad;
  const e = findContaining(sorted, addr);
  if (e === undefined) return { ok: false, miss: { kind: "unmapped", addr, next: sorted[insertionIndex(sorted, addr)]?.start ?? U64_END } };
  return { ok: true, span: spanOf(e.host, Number(addr - e.start), len, true) };
}
