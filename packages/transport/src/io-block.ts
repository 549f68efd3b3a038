/**
 * The native scratch of one `Endpoint` direction: a msghdr, its iovec array and control
 * buffer, and the data area, laid out once and re-pointed per sendmsg/recvmsg without allocating.
 * @module
 */
import { cmsgSpace } from "./sys/cmsg.js";
import { nativeAlloc, type NativeBlock } from "./sys/socket.js";

/** Offset of the msghdr in the block. */
export const MSGHDR = 0;
/** Offset of the iovec array. */
export const IOV = 64;
/** iovec entries at IOV (16 bytes each) before the control buffer at CMSG. */
export const MAX_IOV = 4;
/** Offset of the control buffer. */
export const CMSG = IOV + 16 * MAX_IOV;
/**
 * Payload parts at least this long are handed to sendmsg from their own memory (an extra iovec)
 * instead of being copied into the send buffer first; shorter ones are cheaper to copy.
 */
export const GATHER_MIN = 4096;

/** Native scratch: msghdr + iovec + control buffer + data area. */
export class IoBlock {
  readonly block: NativeBlock;
  readonly cmsgCap: number;
  readonly dataOff: number;
  /** Native address of the block as a Number (user-space addresses are < 2^47, exact in a double). */
  readonly #addr: number;
  constructor(maxFds: number, dataLen: number) {
    // One extra fd slot so "one too many" is reported as TOO_MANY_FDS rather than MSG_CTRUNC.
    this.cmsgCap = cmsgSpace(4 * (maxFds + 1));
    this.dataOff = (CMSG + this.cmsgCap + 63) & ~63;
    this.block = nativeAlloc(this.dataOff + dataLen);
    this.#addr = Number(this.block.addr);
    // The fixed msghdr fields (no name, the iovec array at IOV) are written once; each call sets the rest.
    setU64(this.block.view, MSGHDR + 16, this.#addr + IOV);
  }

  /** Point the iovec at data [off, off+len) and the control buffer at `controlLen` bytes (0 = none). */
  prepare(off: number, len: number, controlLen: number): void {
    this.control(controlLen);
    this.setIov(0, this.#addr + this.dataOff + off, len);
    this.iovCount(1);
  }

  /** Point the control buffer at `controlLen` bytes (0 = none) and clear msg_flags. */
  control(controlLen: number): void {
    // Numbers, not BigInts: this runs twice per message and a BigInt allocation costs more than the syscall.
    const v = this.block.view;
    setU64(v, MSGHDR + 32, controlLen > 0 ? this.#addr + CMSG : 0);
    setU64(v, MSGHDR + 40, controlLen);
    v.setInt32(MSGHDR + 48, 0, true);
  }

  /** iovec `i` (< MAX_IOV) = [addr, addr+len). */
  setIov(i: number, addr: number, len: number): void {
    setU64(this.block.view, IOV + 16 * i, addr);
    setU64(this.block.view, IOV + 16 * i + 8, len);
  }

  /** msg_iovlen. */
  iovCount(n: number): void {
    setU64(this.block.view, MSGHDR + 24, n);
  }

  /** Native address of data offset `off`. */
  dataAddr(off: number): number {
    return this.#addr + this.dataOff + off;
  }
}

/** Store a non-negative integer below 2^53 as a little-endian u64. */
export function setU64(v: DataView, off: number, n: number): void {
  v.setUint32(off, n >>> 0, true);
  v.setUint32(off + 4, Math.floor(n / 0x1_0000_0000), true);
}

/** Read a little-endian u64 known to be below 2^32 (lengths of our own buffers). */
export function getSmallU64(v: DataView, off: number): number {
  return v.getUint32(off + 4, true) === 0 ? v.getUint32(off, true) : Number.MAX_SAFE_INTEGER;
}
