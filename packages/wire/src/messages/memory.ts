/**
 * Guest memory payloads (docs/protocol.md#payload-layouts): memory region, memory table (SET_MEM_TABLE), single
 * region (ADD/REM_MEM_REG) and log (SET_LOG_BASE).
 * @module
 */
import type { ByteReader } from "../codec/byte-reader.js";
import type { ByteWriter } from "../codec/byte-writer.js";
import { checkNoOverflow, checkValue } from "../codec/checked-math.js";
import type { PayloadCodec } from "../codec/payload-codec.js";
import { fixedSize } from "../codec/payload-codec.js";
import { MAX_MEM_TABLE_REGIONS } from "../limits.js";

/**
 * `VhostUserMemoryRegion` (32 bytes): 0:u64 guest_phys_addr, 8:u64 memory_size,
 * 16:u64 userspace_addr, 24:u64 mmap_offset. All in bytes.
 */
export interface MemoryRegion {
  /** Guest physical address of the first byte. */
  readonly guestPhysAddr: bigint;
  /** Region length in bytes; non-zero. */
  readonly memorySize: bigint;
  /** Front-end user address (opaque to back-ends; equals `guestPhysAddr` with GPA_ADDRESSES). */
  readonly userAddr: bigint;
  /** Offset in bytes into the attached fd where the region starts. */
  readonly mmapOffset: bigint;
}

/** Size in bytes of one memory region entry (without XEN_MMAP). */
export const MEMORY_REGION_SIZE = 32;

function validateRegion(request: string, v: MemoryRegion): void {
  checkValue(v.memorySize !== 0n, request, () => "memory region of size 0", 0n);
  checkNoOverflow(request, v.guestPhysAddr, v.memorySize, "guest_phys_addr + memory_size");
  checkNoOverflow(request, v.userAddr, v.memorySize, "userspace_addr + memory_size");
  checkNoOverflow(request, v.mmapOffset, v.memorySize, "mmap_offset + memory_size");
}

function writeRegion(w: ByteWriter, v: MemoryRegion): void {
  validateRegion(w.request, v);
  w.u64(v.guestPhysAddr);
  w.u64(v.memorySize);
  w.u64(v.userAddr);
  w.u64(v.mmapOffset);
}

function readRegion(r: ByteReader): MemoryRegion {
  const v: MemoryRegion = { guestPhysAddr: r.u64(), memorySize: r.u64(), userAddr: r.u64(), mmapOffset: r.u64() };
  validateRegion(r.request, v);
  return v;
}

/** One memory region (32 bytes). @throws WireError `BAD_VALUE` (size 0), `OVERFLOW` (address + size). */
export const MemoryRegionCodec: PayloadCodec<MemoryRegion> = {
  ...fixedSize("memory region", MEMORY_REGION_SIZE),
  encode: writeRegion,
  decode: readRegion,
};

/** SET_MEM_TABLE payload: the whole table; one fd per region travels with it, in the same order. */
export interface MemoryTable {
  /** Regions in fd order; at most {@link MAX_MEM_TABLE_REGIONS} (8) with the default codec. */
  readonly regions: readonly MemoryRegion[];
}

/**
 * Memory table codec for at most `maxRegions` regions: 0:u32 nregions, 4:u32 padding (written 0,
 * not checked), 8: regions[nregions]. The payload size must be exactly 8 + 32·nregions.
 * @throws WireError `BAD_VALUE` when nregions exceeds `maxRegions`; `BAD_SIZE` on a size mismatch.
 */
export function memoryTableCodec(maxRegions: number): PayloadCodec<MemoryTable> {
  return {
    layout: "memory table",
    minSize: 8,
    maxSize: 8 + MEMORY_REGION_SIZE * maxRegions,
    sizeOf: (v) => 8 + MEMORY_REGION_SIZE * v.regions.length,
    encode(w, v) {
      const n = v.regions.length;
      checkValue(n <= maxRegions, w.request, () => `${n} memory regions, at most ${maxRegions}`, n);
      w.u32(n);
      w.zeros(4);
      for (const region of v.regions) writeRegion(w, region);
    },
    decode(r) {
      const n = r.u32();
      checkValue(n <= maxRegions, r.request, () => `nregions ${n}, at most ${maxRegions}`, n);
      r.skip(4);
      r.requireLength([8 + MEMORY_REGION_SIZE * n], `nregions ${n}`);
      const regions: MemoryRegion[] = [];
      for (let i = 0; i < n; i++) regions.push(readRegion(r));
      return { regions };
    },
  };
}

/** Memory table codec with the default cap of 8 regions (VHOST_MEMORY_BASELINE_NREGIONS, 8 + 8·32 = 264 B). */
export const MemoryTableCodec: PayloadCodec<MemoryTable> = memoryTableCodec(MAX_MEM_TABLE_REGIONS);

/**
 * Single region (40 bytes, ADD_MEM_REG / REM_MEM_REG and the postcopy ADD_MEM_REG reply):
 * 0:u64 padding (written 0, not checked), 8: memory region.
 */
export const SingleRegionCodec: PayloadCodec<MemoryRegion> = {
  ...fixedSize("single region", 40),
  encode(w, v) {
    w.zeros(8);
    writeRegion(w, v);
  },
  decode(r) {
    r.skip(8);
    return readRegion(r);
  },
};

/** Log payload of SET_LOG_BASE (16 bytes): 0:u64 mmap_size, 8:u64 mmap_offset (bytes). */
export interface LogArea {
  /** Size in bytes of the dirty log area in the attached fd. */
  readonly mmapSize: bigint;
  /** Offset in bytes of the log area in the attached fd. */
  readonly mmapOffset: bigint;
}

/** Log codec (16 bytes). @throws WireError `OVERFLOW` when mmap_offset + mmap_size overflows u64. */
export const LogCodec: PayloadCodec<LogArea> = {
  ...fixedSize("log", 16),
  encode(w, v) {
    checkNoOverflow(w.request, v.mmapOffset, v.mmapSize, "mmap_offset + mmap_size");
    w.u64(v.mmapSize);
    w.u64(v.mmapOffset);
  },
  decode(r) {
    const v = { mmapSize: r.u64(), mmapOffset: r.u64() };
    checkNoOverflow(r.request, v.mmapOffset, v.mmapSize, "mmap_offset + mmap_size");
    return v;
  },
};

/**
 * SET_LOG_BASE reply (with LOG_SHMFD): libvhost-user sends a u64 (8 bytes, a `bigint`), rust-vmm
 * echoes the 16-byte log (a {@link LogArea}). QEMU ignores the content.
 */
export const LogBaseReplyCodec: PayloadCodec<bigint | LogArea> = {
  layout: "u64 or log",
  minSize: 8,
  maxSize: 16,
  sizeOf: (v) => (typeof v === "bigint" ? 8 : 16),
  encode(w, v) {
    if (typeof v === "bigint") w.u64(v);
    else LogCodec.encode(w, v);
  },
  decode(r) {
    r.requireLength([8, 16], "reply");
    if (r.length === 8) return r.u64();
    return LogCodec.decode(r);
  },
};
