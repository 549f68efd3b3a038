/**
 * VIRTIO Shared Memory Regions of one device on the front-end: PROT_NONE reservations placed in
 * guest-physical space, and the SHMEM_MAP / SHMEM_UNMAP bookkeeping (docs/shmem.md#mapping-rules, docs/shmem.md#security-rules).
 * @module
 */
import { describeErrno, fstatSize, getSeals, MAP, mmanErrno, mmapOrErrno, PROT, SEAL } from "@vhostkit/transport/sys";
import { addU64, rangesOverlap, requirePageAligned, toLength, U64_MAX } from "./checked-math.js";
import { RegionError, type RegionErrorDetail } from "./errors.js";
import { closeOwned, takeFd, type FdInput } from "./fd-input.js";
import { guestAddress, type GuestAddress } from "./guest-address.js";
import type { GuestMemory, TranslateResult } from "./guest-memory.js";
import { HostMapping, unmapHost } from "./host-mapping.js";
import { findContaining, insertionIndex, readThrough, spanOf, translateArgsMiss, writeThrough } from "./span-lookup.js";

/** SHMEM_MAP `flags` bit 0: 1 = read-write, 0 = read-only. No other bit is defined (docs/shmem.md#map-payload). */
export const SHMEM_MAP_FLAG_RW = 1n;

/** Default cap on live mappings in one shared memory region (each mapping costs up to 2 VMAs). */
export const DEFAULT_MAX_MAPPINGS_PER_REGION = 256;

/**
 * Default cap on live mappings across all regions of one device: at most ~2049 VMAs per device,
 * far below the Linux default `vm.max_map_count` of 65530.
 */
export const DEFAULT_MAX_MAPPINGS_PER_DEVICE = 1024;

/** Number of shmids a device can have (the GET_SHMEM_CONFIG array has 256 entries). */
export const MAX_SHMIDS = 256;

/** One shared memory region as placed in guest-physical space. */
export interface ShmemRegionInfo {
  /** VIRTIO Shared Memory Region id (u8). */
  readonly shmid: number;
  /** Size in bytes (a page multiple, > 0). */
  readonly size: bigint;
  /** Guest-physical address of offset 0 of the region. */
  readonly guestPhysAddr: GuestAddress;
}

/**
 * A live SHMEM_MAP mapping, as needed to propagate it to other back-ends (eager propagation,
 * docs/shmem.md#eager-propagation): `guestPhysAddr` = region base + `shmOffset`.
 */
export interface ShmemMapping {
  /** Region id. */
  readonly shmid: number;
  /** Offset from the start of the region, bytes (page-aligned). */
  readonly shmOffset: bigint;
  /** Length in bytes (page-aligned, > 0). */
  readonly len: bigint;
  /** Guest-physical address of the first byte. */
  readonly guestPhysAddr: GuestAddress;
  /**
   * The mapped fd, owned by the device and **borrowed** by readers: valid until the mapping is
   * unmapped (the `unmap` event is the last moment it is open). Dup it to keep it longer.
   */
  readonly fd: number;
  /** Offset into the fd, bytes (page-aligned). */
  readonly fdOffset: bigint;
  /** True for PROT_READ|PROT_WRITE, false for PROT_READ only. */
  readonly writable: boolean;
}

/**
 * A mapping change, delivered synchronously after the table and the host mapping changed.
 * `unmap` is also delivered for every mapping dropped by `reset()` and `dispose()`.
 */
export type ShmemMappingEvent = { readonly kind: "map"; readonly mapping: ShmemMapping } | { readonly kind: "unmap"; readonly mapping: ShmemMapping };

/** Options of {@link DeviceSharedMemory}. */
export interface DeviceSharedMemoryOptions {
  /**
   * Region sizes by shmid, as GET_SHMEM_CONFIG reports them: an array indexed by shmid (the
   * 256-entry `memory_sizes`) or a map. Zero sizes mean "unused" and get no region. Each non-zero
   * size must be a page multiple.
   */
  readonly sizes: readonly bigint[] | ReadonlyMap<number, bigint>;
  /** Guest-physical address of the first region (page-aligned). Regions follow back to back in shmid order, like a BAR. */
  readonly guestPhysAddr: GuestAddress;
  /** Cap on live mappings per region (default {@link DEFAULT_MAX_MAPPINGS_PER_REGION}). */
  readonly maxMappingsPerRegion?: number;
  /** Cap on live mappings per device (default {@link DEFAULT_MAX_MAPPINGS_PER_DEVICE}). */
  readonly maxMappingsPerDevice?: number;
  /**
   * Refuse SHMEM_MAP of a regular file (a memfd) that is not sealed with `F_SEAL_SHRINK` (default
   * true). The back-end keeps its fd: if it could truncate the file, any later access to the mapping
   * here (a driver reading the blob, a MEM_READ served from it) would die of SIGBUS. Turn it off
   * only for back-ends you trust not to truncate what they mapped.
   */
  readonly requireSealedFds?: boolean;
}

interface LiveMapping {
  readonly start: bigint; // shmOffset
  readonly len: bigint;
  readonly end: bigint;
  readonly info: ShmemMapping;
  readonly host: HostMapping;
}

interface Region {
  readonly start: bigint; // guest-physical
  readonly len: bigint;
  readonly end: bigint;
  readonly info: ShmemRegionInfo;
  readonly reservation: HostMapping;
  readonly mappings: LiveMapping[]; // sorted by shmOffset
}

const hostWindows = new WeakMap<object, (shmid: number) => bigint | undefined>();

/**
 * Host address of region `shmid`'s reservation, for tests that inspect `/proc/self/maps`. Not
 * exported from the package entry: host addresses never leave this package's tests.
 * @internal
 */
export function hostWindowForTesting(dev: DeviceSharedMemory, shmid: number): bigint | undefined {
  return hostWindows.get(dev)?.(shmid);
}

const RESERVE_FLAGS = MAP.PRIVATE | MAP.ANONYMOUS | MAP.NORESERVE;

function reserve(addr: bigint, len: number, detail: RegionErrorDetail): HostMapping {
  const fixed = addr === 0n ? 0 : MAP.FIXED;
  // SAFETY: with MAP_FIXED the target lies inside a reservation this object owns, so it replaces
  // only our own pages; the replacement is atomic (no window where the range is unmapped).
  const r = mmapOrErrno(addr, len, PROT.NONE, RESERVE_FLAGS | fixed, -1, 0n);
  if (!r.ok)
    throw new RegionError("MMAP_FAILED", `PROT_NONE reservation of 0x${len.toString(16)} bytes: ${describeErrno(r.errno)}`, detail, {
      errno: r.errno,
      syscall: "mmap",
    });
  return new HostMapping(r.addr, len);
}

function sizesOf(sizes: DeviceSharedMemoryOptions["sizes"]): [number, bigint][] {
  const out: [number, bigint][] = [];
  if (Array.isArray(sizes)) {
    if (sizes.length > MAX_SHMIDS)
      throw new RegionError("BAD_CONFIG", `${sizes.length} shmids given, at most ${MAX_SHMIDS}`, { expected: MAX_SHMIDS, actual: sizes.length });
    (sizes as readonly bigint[]).forEach((s, i) => out.push([i, s]));
  } else {
    for (const [id, s] of sizes as ReadonlyMap<number, bigint>) out.push([id, s]);
    out.sort((a, b) => a[0] - b[0]);
  }
  return out;
}

/**
 * The VIRTIO Shared Memory Regions of one device (front-end side).
 *
 * Each non-zero region is reserved on construction with `PROT_NONE` and
 * `MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE`; SHMEM_MAP replaces part of the reservation with
 * `MAP_SHARED|MAP_FIXED` (PROT_READ, or PROT_READ|PROT_WRITE; never exec), SHMEM_UNMAP puts the
 * PROT_NONE reservation back with `MAP_FIXED` in one call, so the window never has a hole an
 * unrelated `mmap` could land in (docs/shmem.md#keep-the-window-reserved). Host virtual addresses never leave this
 * object: mappings are described by region offsets and guest-physical addresses.
 *
 * Access from JavaScript goes through {@link DeviceSharedMemory.translate} / `read` / `write`,
 * which consult the mapping table first: reservation pages are never touched, read-only mappings
 * are never written through this API. Spans returned by `translate` must not be used after the
 * mapping they view is unmapped (that would touch PROT_NONE memory and kill the process).
 */
export class DeviceSharedMemory implements GuestMemory, Disposable {
  readonly #regions: Region[] = [];
  readonly #byShmid = new Map<number, Region>();
  readonly #maxPerRegion: number;
  readonly #maxPerDevice: number;
  readonly #requireSealed: boolean;
  readonly #listeners = new Set<(e: ShmemMappingEvent) => void>();
  #live = 0;
  #disposed = false;
  /** Guest-physical address of the first region. */
  readonly guestPhysAddr: GuestAddress;
  /** Total size in bytes of all regions (the BAR size before any rounding the transport applies). */
  readonly size: bigint;

  /**
   * Validates the configuration and reserves every non-zero region.
   * @throws RegionError `BAD_CONFIG` (shmid out of range, too many shmids, caps not positive
   *   integers, duplicate shmid), `MISALIGNED` (size or base), `OVERFLOW`, `MMAP_FAILED`.
   *   Nothing stays reserved when it throws.
   */
  constructor(options: DeviceSharedMemoryOptions) {
    this.#maxPerRegion = options.maxMappingsPerRegion ?? DEFAULT_MAX_MAPPINGS_PER_REGION;
    this.#maxPerDevice = options.maxMappingsPerDevice ?? DEFAULT_MAX_MAPPINGS_PER_DEVICE;
    this.#requireSealed = options.requireSealedFds ?? true;
    for (const [name, v] of [
      ["maxMappingsPerRegion", this.#maxPerRegion],
      ["maxMappingsPerDevice", this.#maxPerDevice],
    ] as const) {
      if (!Number.isSafeInteger(v) || v < 1) throw new RegionError("BAD_CONFIG", `${name} must be a positive integer, got ${v}`, { actual: v });
    }
    requirePageAligned(options.guestPhysAddr, "shared memory base guest address");
    this.guestPhysAddr = options.guestPhysAddr;
    let next = options.guestPhysAddr as bigint;
    const seen = new Set<number>();
    try {
      for (const [shmid, size] of sizesOf(options.sizes)) {
        if (!Number.isInteger(shmid) || shmid < 0 || shmid >= MAX_SHMIDS) throw new RegionError("BAD_CONFIG", `shmid ${shmid} is not a u8`, { shmid });
        if (seen.has(shmid)) throw new RegionError("BAD_CONFIG", `shmid ${shmid} given twice`, { shmid });
        seen.add(shmid);
        if (size < 0n || size > U64_MAX) throw new RegionError("BAD_CONFIG", `size of shmid ${shmid} is not a u64`, { shmid });
        if (size === 0n) continue;
        requirePageAligned(size, `size of shmid ${shmid}`, { shmid });
        const end = addU64(next, size, `shmid ${shmid} placement`, { shmid });
        const reservation = reserve(0n, toLength(size, `size of shmid ${shmid}`, { shmid }), { shmid });
        const info: ShmemRegionInfo = { shmid, size, guestPhysAddr: guestAddress(next) };
        const region: Region = { start: next, len: size, end: next + size, info, reservation, mappings: [] };
        this.#regions.push(region);
        this.#byShmid.set(shmid, region);
        next = end;
      }
    } catch (e) {
      for (const r of this.#regions) unmapHost(r.reservation);
      throw e;
    }
    this.size = next - options.guestPhysAddr;
    hostWindows.set(this, (id) => this.#byShmid.get(id)?.reservation.addr);
  }

  /** The placed regions in shmid (= guest-physical) order. */
  regions(): readonly ShmemRegionInfo[] {
    return this.#regions.map((r) => r.info);
  }

  /** Every live mapping, in region then offset order. */
  mappings(): readonly ShmemMapping[] {
    return this.#regions.flatMap((r) => r.mappings.map((m) => m.info));
  }

  /** Number of live mappings on this device. */
  get mappingCount(): number {
    return this.#live;
  }

  /** The configured per-region cap on live mappings. */
  get maxMappingsPerRegion(): number {
    return this.#maxPerRegion;
  }

  /** The configured per-device cap on live mappings. */
  get maxMappingsPerDevice(): number {
    return this.#maxPerDevice;
  }

  /**
   * Subscribes to mapping changes. Listeners run synchronously after each change; an exception
   * from a listener is re-thrown asynchronously (it does not undo or fail the change).
   * @returns a function that unsubscribes.
   */
  addListener(listener: (e: ShmemMappingEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #emit(e: ShmemMappingEvent): void {
    for (const l of this.#listeners) {
      try {
        l(e);
      } catch (err) {
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }

  #alive(): void {
    if (this.#disposed) throw new RegionError("DISPOSED", "device shared memory was disposed");
  }

  #region(shmid: number): Region {
    const r = Number.isInteger(shmid) ? this.#byShmid.get(shmid) : undefined;
    if (r === undefined) throw new RegionError("UNKNOWN_SHMID", `shmid ${shmid} has no shared memory region on this device`, { shmid });
    return r;
  }

  /**
   * BACKEND_SHMEM_MAP: maps `len` bytes of `fd` from `fdOffset` at `shmOffset` into region `shmid`.
   *
   * Checks, in order, before any mmap: fd usable, shmid known and non-zero-sized, flags only bit 0,
   * `len` != 0, `shmOffset`/`len`/`fdOffset` page-aligned, no u64 overflow of `shmOffset + len` or
   * `fdOffset + len`, inside the region, no overlap with a live mapping, caps, and (for regular
   * files such as memfds) `fdOffset + len` within the file size so no access can hit SIGBUS.
   *
   * **Fd ownership:** takes ownership of `fd` in every case. On rejection it is closed before this
   * throws; on success it stays open, owned by the mapping (see {@link ShmemMapping.fd}), and is
   * closed exactly once when the mapping is unmapped, reset or disposed.
   *
   * @param flags - SHMEM_MAP flags (u64): {@link SHMEM_MAP_FLAG_RW} or 0 (read-only).
   * @returns the mapping descriptor (also delivered to listeners as a `map` event).
   * @throws RegionError `BAD_FD`, `UNKNOWN_SHMID`, `BAD_FLAGS`, `ZERO_SIZE`, `MISALIGNED`,
   *   `OVERFLOW`, `OUT_OF_BOUNDS`, `OVERLAP`, `TOO_MANY`, `UNSEALED`, `MMAP_FAILED`, `DISPOSED`.
   */
  map(shmid: number, shmOffset: bigint, len: bigint, fd: FdInput, fdOffset: bigint, flags: bigint): ShmemMapping {
    const raw = takeFd(fd);
    try {
      if (raw < 0) throw new RegionError("BAD_FD", "SHMEM_MAP without a usable fd", { shmid });
      return this.#map(shmid, shmOffset, len, raw, fdOffset, flags);
    } catch (e) {
      closeOwned(raw);
      throw e;
    }
  }

  #map(shmid: number, shmOffset: bigint, len: bigint, fd: number, fdOffset: bigint, flags: bigint): ShmemMapping {
    this.#alive();
    const region = this.#region(shmid);
    const detail: RegionErrorDetail = { request: "SHMEM_MAP", shmid, offset: shmOffset, len };
    if (flags < 0n || (flags & ~SHMEM_MAP_FLAG_RW) !== 0n)
      throw new RegionError("BAD_FLAGS", `SHMEM_MAP flags 0x${flags.toString(16)} has unknown bits`, { ...detail, actual: flags });
    if (len === 0n) throw new RegionError("ZERO_SIZE", "SHMEM_MAP of length 0", detail);
    if (len < 0n || shmOffset < 0n || fdOffset < 0n) throw new RegionError("OVERFLOW", "SHMEM_MAP with a negative value", detail);
    requirePageAligned(shmOffset, "SHMEM_MAP shm_offset", detail);
    requirePageAligned(len, "SHMEM_MAP len", detail);
    requirePageAligned(fdOffset, "SHMEM_MAP fd_offset", detail);
    const end = addU64(shmOffset, len, "SHMEM_MAP shm_offset + len", detail);
    const fdEnd = addU64(fdOffset, len, "SHMEM_MAP fd_offset + len", detail);
    if (end > region.len)
      throw new RegionError(
        "OUT_OF_BOUNDS",
        `SHMEM_MAP 0x${shmOffset.toString(16)}+0x${len.toString(16)} leaves shmid ${shmid} of size 0x${region.len.toString(16)}`,
        { ...detail, expected: region.len, actual: end },
      );
    const at = insertionIndex(region.mappings, shmOffset);
    for (const n of [region.mappings[at - 1], region.mappings[at]]) {
      if (n !== undefined && rangesOverlap(n.start, n.len, shmOffset, len)) {
        throw new RegionError(
          "OVERLAP",
          `SHMEM_MAP 0x${shmOffset.toString(16)}+0x${len.toString(16)} overlaps the mapping at 0x${n.start.toString(16)}+0x${n.len.toString(16)} of shmid ${shmid}`,
          detail,
        );
      }
    }
    if (region.mappings.length >= this.#maxPerRegion)
      throw new RegionError("TOO_MANY", `shmid ${shmid} already has ${region.mappings.length} mappings`, { ...detail, expected: this.#maxPerRegion });
    if (this.#live >= this.#maxPerDevice)
      throw new RegionError("TOO_MANY", `device already has ${this.#live} mappings`, { ...detail, expected: this.#maxPerDevice });
    const st = fstatSize(fd);
    if (st === undefined) {
      const errno = mmanErrno();
      throw new RegionError("BAD_FD", `fstat of the SHMEM_MAP fd: ${describeErrno(errno)}`, detail, { errno, syscall: "fstat" });
    }
    if (st.regular && fdEnd > st.size)
      throw new RegionError("OUT_OF_BOUNDS", `SHMEM_MAP fd_offset + len 0x${fdEnd.toString(16)} is past the end of the file (0x${st.size.toString(16)})`, {
        ...detail,
        expected: st.size,
        actual: fdEnd,
      });
    if (st.regular && this.#requireSealed) {
      const seals = getSeals(fd);
      if (seals < 0 || (seals & SEAL.SHRINK) === 0)
        throw new RegionError(
          "UNSEALED",
          "SHMEM_MAP of a file the back-end can still shrink (no F_SEAL_SHRINK): an access after a truncate would be SIGBUS",
          detail,
        );
    }
    const writable = (flags & SHMEM_MAP_FLAG_RW) !== 0n;
    const length = toLength(len, "SHMEM_MAP len", detail);
    const target = region.reservation.addr + shmOffset;
    // SAFETY: `[target, target + len)` lies inside this region's reservation and overlaps no live
    // mapping (checked above), so MAP_FIXED replaces PROT_NONE pages we own and nothing else.
    const r = mmapOrErrno(target, length, writable ? PROT.READ | PROT.WRITE : PROT.READ, MAP.SHARED | MAP.FIXED, fd, fdOffset);
    if (!r.ok) {
      // A failed MAP_FIXED may already have discarded the old pages: put the reservation back.
      reserve(target, length, detail);
      throw new RegionError("MMAP_FAILED", `SHMEM_MAP mmap: ${describeErrno(r.errno)}`, detail, { errno: r.errno, syscall: "mmap" });
    }
    const info: ShmemMapping = { shmid, shmOffset, len, guestPhysAddr: guestAddress(region.start + shmOffset), fd, fdOffset, writable };
    region.mappings.splice(at, 0, { start: shmOffset, len, end: shmOffset + len, info, host: new HostMapping(r.addr, length) });
    this.#live++;
    this.#emit({ kind: "map", mapping: info });
    return info;
  }

  /**
   * BACKEND_SHMEM_UNMAP: removes the mapping that is exactly `[shmOffset, shmOffset + len)` of
   * region `shmid`, restores the PROT_NONE reservation over it with one `MAP_FIXED` mmap, and closes
   * the mapping's fd.
   * @throws RegionError `UNKNOWN_SHMID`, `NOT_FOUND` (no mapping matches exactly), `MMAP_FAILED`
   *   (the mapping then stays in place), `DISPOSED`.
   */
  unmap(shmid: number, shmOffset: bigint, len: bigint): void {
    this.#alive();
    const region = this.#region(shmid);
    const i = insertionIndex(region.mappings, shmOffset);
    const m = region.mappings[i];
    if (m === undefined || m.start !== shmOffset || m.len !== len) {
      throw new RegionError("NOT_FOUND", `SHMEM_UNMAP 0x${shmOffset.toString(16)}+0x${len.toString(16)} matches no mapping of shmid ${shmid}`, {
        request: "SHMEM_UNMAP",
        shmid,
        offset: shmOffset,
        len,
      });
    }
    this.#drop(region, i);
  }

  #drop(region: Region, i: number): void {
    const m = region.mappings[i]!;
    m.host.forgetView();
    reserve(m.host.addr, m.host.len, { shmid: m.info.shmid, offset: m.start, len: m.len });
    region.mappings.splice(i, 1);
    this.#live--;
    this.#emit({ kind: "unmap", mapping: m.info });
    closeOwned(m.info.fd);
  }

  /** Device reset: removes every mapping (reservations stay, PROT_NONE). Emits `unmap` for each. */
  reset(): void {
    for (const region of this.#regions) {
      while (region.mappings.length > 0) this.#drop(region, region.mappings.length - 1);
    }
  }

  /** Releases everything: every mapping (as `reset`), every reservation, every fd. Idempotent. */
  dispose(): void {
    if (this.#disposed) return;
    this.reset();
    this.#disposed = true;
    for (const r of this.#regions) unmapHost(r.reservation);
    this.#regions.length = 0;
    this.#byShmid.clear();
    this.#listeners.clear();
  }

  /** Same as {@link DeviceSharedMemory.dispose}. */
  [Symbol.dispose](): void {
    this.dispose();
  }

  /**
   * Host view of guest-physical `[addr, addr + len)` inside this device's regions, clamped to the
   * end of the live mapping that contains `addr`. A miss (`unmapped`) for reserved-but-unmapped
   * pages or addresses outside the device, never an exception; `writable` is false for read-only
   * mappings.
   */
  translate(addr: GuestAddress, len: number): TranslateResult {
    const bad = translateArgsMiss(addr, len);
    if (bad !== undefined) return bad;
    const region = findContaining(this.#regions, addr);
    const m = region === undefined ? undefined : findContaining(region.mappings, addr - region.start);
    if (region === undefined || m === undefined) return { ok: false, miss: { kind: "unmapped", addr } };
    return { ok: true, span: spanOf(m.host, Number(addr - region.start - m.start), len, m.info.writable) };
  }

  /**
   * Copies guest memory at `addr` into `dst`; the whole range must be mapped.
   * @throws RegionError `UNMAPPED`, `OVERFLOW`.
   */
  read(addr: GuestAddress, dst: Uint8Array): Promise<void> {
    return readThrough((a, l) => this.translate(a, l), addr, dst);
  }

  /**
   * Copies `src` to guest memory at `addr`; the whole range must be mapped and writable, checked
   * before any byte is written.
   * @throws RegionError `UNMAPPED`, `READ_ONLY`, `OVERFLOW`.
   */
  write(addr: GuestAddress, src: Uint8Array): Promise<void> {
    return writeThrough((a, l) => this.translate(a, l), addr, src);
  }
}
