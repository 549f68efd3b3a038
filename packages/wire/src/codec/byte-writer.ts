import { WireError } from "../errors.js";

/**
 * Little-endian writer over a pre-sized Uint8Array (allocated once by the caller). Integer writes
 * check their range and throw `WireError` `BAD_VALUE` instead of silently wrapping.
 */
export class ByteWriter {
  /** Destination bytes (borrowed). */
  readonly bytes: Uint8Array;
  /** View over exactly `bytes`. */
  readonly view: DataView;
  /** Current write position in bytes. */
  pos: number;

  /** @param bytes - destination, borrowed; @param pos - start offset in bytes. */
  constructor(bytes: Uint8Array, pos = 0) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pos = pos;
  }

  private check(ok: boolean, what: string, v: number | bigint): void {
    if (!ok) throw new WireError("BAD_VALUE", `encode: ${String(v)} is not a valid ${what}`, { actual: v, offset: this.pos });
  }

  /** Write a u8. */
  u8(v: number): void {
    this.check(Number.isInteger(v) && v >= 0 && v <= 0xff, "u8", v);
    this.view.setUint8(this.pos++, v);
  }

  /** Write a little-endian u16. */
  u16(v: number): void {
    this.check(Number.isInteger(v) && v >= 0 && v <= 0xffff, "u16", v);
    this.view.setUint16(this.pos, v, true);
    this.pos += 2;
  }

  /** Write a little-endian u32. */
  u32(v: number): void {
    this.check(Number.isInteger(v) && v >= 0 && v <= 0xffff_ffff, "u32", v);
    this.view.setUint32(this.pos, v, true);
    this.pos += 4;
  }

  /** Write a little-endian u64. */
  u64(v: bigint): void {
    this.check(typeof v === "bigint" && v >= 0n && v <= 0xffff_ffff_ffff_ffffn, "u64", v);
    this.view.setBigUint64(this.pos, v, true);
    this.pos += 8;
  }

  /** Copy `b` in. */
  raw(b: Uint8Array): void {
    this.bytes.set(b, this.pos);
    this.pos += b.byteLength;
  }

  /** Write `n` zero bytes (explicit padding). */
  zeros(n: number): void {
    this.bytes.fill(0, this.pos, this.pos + n);
    this.pos += n;
  }
}
