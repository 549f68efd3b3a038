/**
 * Front-end guest RAM: memfd-backed, sealed against resizing, laid out in guest-physical space
 * and described as memory-table regions with synthetic user addresses.
 * @module
 */
import { addSeals, describeErrno, ftruncate, memfdCreate, MFD, mmanErrno, SEAL } from "@vhostkit/transport/sys";
import { addU64, rangesOverlap, requirePageAligned, toLength } from "./checked-math.js";
import { RegionError } from "./errors.js";
import { closeOwned } from "./fd-input.js";
import { guestAddress, userAddress, type GuestAddress, type UserAddress } from "./guest-address.js";
import type { GuestMemory, TranslateResult } from "./guest-memory.js";
import { mapShared, unmapHost, type HostMapping } from "./host-mapping.js";
import { findContaining, readThrough, spanOf, translateArgsMiss, writeThrough } from "./span-lookup.js";

/**
 * Default base of the synthetic user-address space: region `userspace_addr` = base + GPA. The
 * value is a constant (it worked with QEMU-era back-ends, docs/protocol.md#memory-table), so user addresses
 * reveal nothing about the front-end's real address-space layout.
 */
export const SYNTHETIC_USER_BASE = 0x7f00_0000_0000n;

/** One RAM block to create: where it sits in guest-physical space and how large it is. */
export interface GuestRamBlock {
  /** Guest-physical address of the first byte (page-aligned). */
  readonly guestPhysAddr: bigint;
  /** Size in bytes (a page multiple, > 0). */
  readonly size: bigint;
}

/** Options of {@link GuestRam}. */
export interface GuestRamOptions {
  /** RAM blocks; they must not overlap. One memfd each. */
  readonly blocks: readonly GuestRamBlock[];
  /**
   * Base of the synthetic user addresses (default {@link SYNTHETIC_USER_BASE}); `userspace_addr`
   * = base + GPA. Use 0n when GPA_ADDRESSES is negotiated (user addresses must equal GPAs).
   */
  readonly userAddrBase?: bigint;
  /** memfd name prefix shown in /proc (default `"vhostkit-guest-ram"`). */
  readonly name?: string;
}

/** A RAM block as a memory-table region, ready for SET_MEM_TABLE / ADD_MEM_REG. */
export interface GuestRamRegion {
  /**
   * The block's memfd, **borrowed**: owned by the {@link GuestRam}, open until it is disposed.
   * Sending it with SCM_RIGHTS gives the peer its own descriptor.
   */
  readonly fd: number;
  /** `guest_phys_addr`. */
  readonly guestPhysAddr: GuestAddress;
  /** `memory_size` in bytes. */
  readonly memorySize: bigint;
  /** `userspace_addr`: synthetic (base + GPA), never a host virtual address. */
  readonly userspaceAddr: UserAddress;
  /** `mmap_offset`: always 0 (one memfd per block). */
  readonly mmapOffset: bigint;
}

interface Block {
  readonly start: bigint;
  readonly len: bigint;
  readonly end: bigint;
  readonly region: GuestRamRegion;
  readonly host: HostMapping;
}

/**
 * Guest RAM of a front-end. Each block is a memfd created with `MFD_CLOEXEC|MFD_ALLOW_SEALING`,
 * sized, then sealed with `F_SEAL_SHRINK|F_SEAL_GROW` (a back-end cannot truncate it under the
 * mappings and cause SIGBUS), and mapped read-write `MAP_SHARED` here.
 */
export class GuestRam implements GuestMemory, Disposable {
  readonly #blocks: Block[] = [];
  readonly #userBase: bigint;
  #disposed = false;

  /**
   * Creates, seals and maps every block.
   * @throws RegionError `ZERO_SIZE`, `MISALIGNED`, `OVERFLOW`, `OVERLAP`, `MMAP_FAILED` (memfd,
   *   ftruncate, seal or mmap failed). Nothing is left open when it throws.
   */
  constructor(options: GuestRamOptions) {
    this.#userBase = options.userAddrBase ?? SYNTHETIC_USER_BASE;
    const name = options.name ?? "vhostkit-guest-ram";
    const sorted = [...options.blocks].sort((a, b) => (a.guestPhysAddr < b.guestPhysAddr ? -1 : 1));
    try {
      sorted.forEach((b, i) => {
        if (b.size <= 0n)
          throw new RegionError("ZERO_SIZE", `guest RAM block at 0x${b.guestPhysAddr.toString(16)} has size 0`, { guestPhysAddr: b.guestPhysAddr });
        requirePageAligned(b.guestPhysAddr, "guest RAM block address");
        requirePageAligned(b.size, "guest RAM block size");
        addU64(b.guestPhysAddr, b.size, "guest RAM block end");
        addU64(this.#userBase + b.guestPhysAddr, b.size, "guest RAM user address end");
        const prev = sorted[i - 1];
        if (prev !== undefined && rangesOverlap(prev.guestPhysAddr, prev.size, b.guestPhysAddr, b.size)) {
          throw new RegionError("OVERLAP", `guest RAM blocks at 0x${prev.guestPhysAddr.toString(16)} and 0x${b.guestPhysAddr.toString(16)} overlap`, {
            guestPhysAddr: b.guestPhysAddr,
          });
        }
        this.#blocks.push(createBlock(`${name}-${i}`, b, this.#userBase));
      });
    } catch (e) {
      this.dispose();
      throw e;
    }
  }

  /** The blocks as memory-table regions, in guest-physical order (fds borrowed). */
  memoryTable(): readonly GuestRamRegion[] {
    return this.#blocks.map((b) => b.region);
  }

  /**
   * The synthetic user address of guest-physical `addr` (for SET_VRING_ADDR ring addresses).
   * @throws RegionError `UNMAPPED` when `addr` is not in guest RAM.
   */
  userAddressOf(addr: GuestAddress): UserAddress {
    if (findContaining(this.#blocks, addr) === undefined) throw new RegionError("UNMAPPED", `0x${addr.toString(16)} is not guest RAM`, { guestPhysAddr: addr });
    return userAddress(this.#userBase + addr);
  }

  /** Host view of guest RAM at `addr`, clamped to the end of its block; `unmapped` miss outside RAM. */
  translate(addr: GuestAddress, len: number): TranslateResult {
    const bad = translateArgsMiss(addr, len);
    if (bad !== undefined) return bad;
    const b = findContaining(this.#blocks, addr);
    if (b === undefined) return { ok: false, miss: { kind: "unmapped", addr } };
    return { ok: true, span: spanOf(b.host, Number(addr - b.start), len, true) };
  }

  /** Copies RAM at `addr` into `dst`. @throws RegionError `UNMAPPED`, `OVERFLOW`. */
  read(addr: GuestAddress, dst: Uint8Array): Promise<void> {
    return readThrough((a, l) => this.translate(a, l), addr, dst);
  }

  /** Copies `src` into RAM at `addr`, checked first. @throws RegionError `UNMAPPED`, `OVERFLOW`. */
  write(addr: GuestAddress, src: Uint8Array): Promise<void> {
    return writeThrough((a, l) => this.translate(a, l), addr, src);
  }

  /** Unmaps every block and closes every memfd. Idempotent. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    for (const b of this.#blocks.splice(0)) {
      unmapHost(b.host);
      closeOwned(b.region.fd);
    }
  }

  /** Same as {@link GuestRam.dispose}. */
  [Symbol.dispose](): void {
    this.dispose();
  }
}

function createBlock(name: string, b: GuestRamBlock, userBase: bigint): Block {
  const detail = { guestPhysAddr: b.guestPhysAddr, len: b.size };
  const len = toLength(b.size, "guest RAM block size", detail);
  const fd = memfdCreate(name, MFD.CLOEXEC | MFD.ALLOW_SEALING);
  if (fd < 0) {
    const errno = mmanErrno();
    throw new RegionError("MMAP_FAILED", `memfd_create: ${describeErrno(errno)}`, detail, { errno, syscall: "memfd_create" });
  }
  try {
    for (const [ok, syscall] of [
      [() => ftruncate(fd, b.size), "ftruncate"],
      [() => addSeals(fd, SEAL.SHRINK | SEAL.GROW), "fcntl"],
    ] as const) {
      if (ok() !== 0) {
        const errno = mmanErrno();
        throw new RegionError("MMAP_FAILED", `${syscall} of the guest RAM memfd: ${describeErrno(errno)}`, detail, { errno, syscall });
      }
    }
    const host = mapShared(fd, 0n, len, true, detail);
    const region: GuestRamRegion = {
      fd,
      guestPhysAddr: guestAddress(b.guestPhysAddr),
      memorySize: b.size,
      userspaceAddr: userAddress(userBase + b.guestPhysAddr),
      mmapOffset: 0n,
    };
    return { start: b.guestPhysAddr, len: b.size, end: b.guestPhysAddr + b.size, region, host };
  } catch (e) {
    closeOwned(fd);
    throw e;
  }
}
