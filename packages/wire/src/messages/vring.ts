/**
 * Vring payloads (docs/protocol.md#payload-layouts): vring state, vring file, vring addr, vring area, and the
 * split/packed vring base helpers.
 * @module
 */
import { checkNoOverflow, checkValue } from "../codec/checked-math.js";
import type { PayloadCodec } from "../codec/payload-codec.js";
import { fixedSize } from "../codec/payload-codec.js";

/** `struct vhost_vring_state` (8 bytes): 0:u32 vring index, 4:u32 num. */
export interface VringState {
  /** Queue index (u32). */
  readonly index: number;
  /** Request-specific number (u32): queue size, base, enable 0/1, endianness 0/1, or 0. */
  readonly num: number;
}

/** Vring state codec (8 bytes): SET_VRING_NUM/BASE/ENABLE/ENDIAN, GET_VRING_BASE, VRING_KICK, BACKEND_VRING_CALL/ERR. */
export const VringStateCodec: PayloadCodec<VringState> = {
  ...fixedSize("vring state", 8),
  encode(w, v) {
    w.u32(v.index);
    w.u32(v.num);
  },
  decode(r) {
    return { index: r.u32(), num: r.u32() };
  },
};

/** Bit 8 of a vring file / vring area u64: no fd is attached (docs/protocol.md#payload-layouts). */
export const VRING_NOFD_MASK = 0x100n;
/** Bits 0–7 of a vring file / vring area u64: the vring index. */
export const VRING_INDEX_MASK = 0xffn;

/** Vring file u64 of SET_VRING_KICK/CALL/ERR (8 bytes): bits 0–7 index, bit 8 no-fd, other bits 0. */
export interface VringFile {
  /** Queue index, 0–255. */
  readonly index: number;
  /** True when no fd is attached (the ring is then polled / notifications disabled). */
  readonly noFd: boolean;
}

function packIndexNoFd(request: string, index: number, noFd: boolean): bigint {
  checkValue(Number.isInteger(index) && index >= 0 && index <= 0xff, request, () => `vring index ${index} not in 0..255`, index);
  return BigInt(index) | (noFd ? VRING_NOFD_MASK : 0n);
}

function unpackIndexNoFd(request: string, v: bigint): VringFile {
  checkValue((v & ~(VRING_INDEX_MASK | VRING_NOFD_MASK)) === 0n, request, () => `reserved bits set in vring u64 0x${v.toString(16)}`, v);
  return { index: Number(v & VRING_INDEX_MASK), noFd: (v & VRING_NOFD_MASK) !== 0n };
}

/** Vring file codec (8 bytes). @throws WireError `BAD_VALUE` on bits 9–63 set or index > 255. */
export const VringFileCodec: PayloadCodec<VringFile> = {
  ...fixedSize("vring file", 8),
  encode(w, v) {
    w.u64(packIndexNoFd(w.request, v.index, v.noFd));
  },
  decode(r) {
    return unpackIndexNoFd(r.request, r.u64());
  },
};

/** Bit 0 of vring addr `flags`: `VHOST_VRING_F_LOG`, log used-ring writes at `logAddr`. */
export const VRING_F_LOG = 0x1;

/**
 * `struct vhost_vring_addr` (40 bytes): 0:u32 index, 4:u32 flags, 8:u64 desc, **16:u64 used,
 * 24:u64 avail**, 32:u64 log. Ring addresses are front-end user addresses (GPAs with GPA_ADDRESSES).
 */
export interface VringAddr {
  /** Queue index (u32). */
  readonly index: number;
  /** Flags (u32): only {@link VRING_F_LOG} is defined. */
  readonly flags: number;
  /** Descriptor table address; 16-byte aligned. */
  readonly descAddr: bigint;
  /** Used ring (device area) address; 4-byte aligned. */
  readonly usedAddr: bigint;
  /** Available ring (driver area) address; 2-byte aligned. */
  readonly availAddr: bigint;
  /** Guest physical address of the used ring for dirty logging. */
  readonly logAddr: bigint;
}

function checkAlign(request: string, what: string, addr: bigint, align: bigint): void {
  checkValue(addr % align === 0n, request, () => `${what} 0x${addr.toString(16)} not ${align}-byte aligned`, addr);
}

function validateVringAddr(request: string, v: VringAddr): void {
  checkValue((v.flags & ~VRING_F_LOG) === 0, request, () => `reserved vring addr flags 0x${(v.flags >>> 0).toString(16)}`, v.flags);
  // VIRTIO 1.x §2.7 (split) / §2.8 (packed): desc 16, used/device area 4, avail 2 (split).
  checkAlign(request, "descriptor table", v.descAddr, 16n);
  checkAlign(request, "used ring", v.usedAddr, 4n);
  checkAlign(request, "avail ring", v.availAddr, 2n);
}

/**
 * Vring addr codec (40 bytes, SET_VRING_ADDR).
 * @throws WireError `BAD_VALUE` on reserved flag bits or a misaligned ring address.
 */
export const VringAddrCodec: PayloadCodec<VringAddr> = {
  ...fixedSize("vring addr", 40),
  encode(w, v) {
    validateVringAddr(w.request, v);
    w.u32(v.index);
    w.u32(v.flags);
    w.u64(v.descAddr);
    w.u64(v.usedAddr);
    w.u64(v.availAddr);
    w.u64(v.logAddr);
  },
  decode(r) {
    const v: VringAddr = { index: r.u32(), flags: r.u32(), descAddr: r.u64(), usedAddr: r.u64(), availAddr: r.u64(), logAddr: r.u64() };
    validateVringAddr(r.request, v);
    return v;
  },
};

/**
 * Vring area (24 bytes, BACKEND_VRING_HOST_NOTIFIER_MSG): 0:u64 (bits 0–7 index, bit 8 no-fd),
 * 8:u64 size, 16:u64 offset into the attached fd.
 */
export interface VringArea {
  /** Queue index, 0–255. */
  readonly index: number;
  /** True when no fd is attached (removes the host notifier). */
  readonly noFd: boolean;
  /** Area size in bytes (must equal the host page size: a semantic check, not done here). */
  readonly size: bigint;
  /** Offset in bytes into the attached fd. */
  readonly offset: bigint;
}

/** Vring area codec (24 bytes). @throws WireError `BAD_VALUE` (reserved bits), `OVERFLOW` (offset + size). */
export const VringAreaCodec: PayloadCodec<VringArea> = {
  ...fixedSize("vring area", 24),
  encode(w, v) {
    checkNoOverflow(w.request, v.offset, v.size, "offset + size");
    w.u64(packIndexNoFd(w.request, v.index, v.noFd));
    w.u64(v.size);
    w.u64(v.offset);
  },
  decode(r) {
    const f = unpackIndexNoFd(r.request, r.u64());
    const size = r.u64();
    const offset = r.u64();
    checkNoOverflow(r.request, offset, size, "offset + size");
    return { index: f.index, noFd: f.noFd, size, offset };
  },
};

/** Split-ring vring base (docs/protocol.md#payload-layouts): `num` bits 0–15 next avail index, bits 16–31 zero. */
export interface SplitVringBase {
  /** Next available-ring index the back-end will read (free-running u16). */
  readonly nextAvailIdx: number;
}

/**
 * Decode the `num` of a split-ring SET/GET_VRING_BASE vring state.
 * @throws WireError `BAD_VALUE` when bits 16–31 are set.
 */
export function decodeSplitVringBase(num: number, request = "SET_VRING_BASE"): SplitVringBase {
  checkValue(num >>> 16 === 0, request, () => `split vring base 0x${(num >>> 0).toString(16)} has bits 16-31 set`, num);
  return { nextAvailIdx: num & 0xffff };
}

/** Encode a split-ring base into a vring state `num`. @throws WireError `BAD_VALUE` when not a u16. */
export function encodeSplitVringBase(base: SplitVringBase, request = "SET_VRING_BASE"): number {
  const i = base.nextAvailIdx;
  checkValue(Number.isInteger(i) && i >= 0 && i <= 0xffff, request, () => `avail index ${i} is not a u16`, i);
  return i;
}

/**
 * Packed-ring vring base (docs/protocol.md#payload-layouts): `num` bits 0–14 next avail idx, 15 avail wrap
 * counter, 16–30 next used idx, 31 used wrap counter.
 */
export interface PackedVringBase {
  /** Next available descriptor index (15 bits). */
  readonly availIdx: number;
  /** Driver ring wrap counter. */
  readonly availWrap: boolean;
  /** Next used descriptor index (15 bits). */
  readonly usedIdx: number;
  /** Device ring wrap counter. */
  readonly usedWrap: boolean;
}

/** Decode the `num` (u32) of a packed-ring vring state. Every bit pattern is valid. */
export function decodePackedVringBase(num: number): PackedVringBase {
  return {
    availIdx: num & 0x7fff,
    availWrap: (num & 0x8000) !== 0,
    usedIdx: (num >>> 16) & 0x7fff,
    usedWrap: (num & 0x8000_0000) !== 0,
  };
}

/** Encode a packed-ring base into a vring state `num`. @throws WireError `BAD_VALUE` when an index exceeds 15 bits. */
export function encodePackedVringBase(base: PackedVringBase, request = "SET_VRING_BASE"): number {
  for (const i of [base.availIdx, base.usedIdx]) {
    checkValue(Number.isInteger(i) && i >= 0 && i <= 0x7fff, request, () => `packed ring index ${i} exceeds 15 bits`, i);
  }
  return (base.availIdx | (base.availWrap ? 0x8000 : 0) | (base.usedIdx << 16) | (base.usedWrap ? 0x8000_0000 : 0)) >>> 0;
}
