import { WireError } from "../errors.js";

/**
 * Little-endian writer over a pre-sized Uint8Array (allocated once by the caller). Integer writes
 * check their range and throw `WireError` `BAD_VALUE` instead of silently wrapping; DataView throws
 * `RangeError` only on a programming error (the message layer sizes the buffer exactly).
 */
export class ByteWriter {
  /** Destination bytes (borrowed). */
  readonly bytes: Uint8Array;
  /** View over exactly `bytes`. */
  readonly view: DataView;
  /** Current write position in bytes. */
  pos: number;
  /** Spec name of the request being encoded, for error messages. */
  readonly request: string;

  /**
   * @param bytes - destination, borrowed until the writer is dropped.
   * @param pos - start offset in bytes.
   * @param request - spec request name used in errors (default `"encode"`).
   */
  constructor(bytes: Uint8Array, pos = 0, request = "encode") {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pos = pos;
    this.request = request;
  }

  private check(ok: boolean, what: string, v: number | bigint): void {
    if (!ok) {
      throw new WireError("BAD_VALUE", `${this.request}: ${String(v)} is not a valid ${what}`, {
        request: this.request,
        actual: v,
        offset: this.pos,
      });
    }
  }

  private room(n: number): void {
    if (this.pos + n > this.bytes.byteLength) {
      throw new WireError("TRUNCATED", `${this.request}: no room for 0x${n.toString(16)} bytes at offset 0x${this.pos.toString(16)}`, {
        request: this.request,
        expected: n,
        actual: this.bytes.byteLength - this.pos,
        offset: this.pos,
      });
    }
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
    if (!(v >>> 0 === v)) this.check(false, "u32", v);
    this.view.setUint32(this.pos, v, true);
    this.pos += 4;
  }

  /** Write a little-endian u64. */
  u64(v: bigint): void {
    if (!(typeof v === "bigint" && v >= 0n && v <= 0xffff_ffff_ffff_ffffn)) this.check(false, "u64", v);
    this.view.setBigUint64(this.pos, v, true);
    this.pos += 8;
  }

  /** Copy `b` in. @throws WireError `TRUNCATED` when it does not fit. */
  raw(b: Uint8Array): void {
    this.room(b.byteLength);
    this.bytes.set(b, this.pos);
    this.pos += b.byteLength;
  }

  /** Write `n` zero bytes (explicit padding). @throws WireError `TRUNCATED` when they do not fit. */
  zeros(n: number): void {
    this.room(n);
    this.bytes.fill(0, this.pos, this.pos + n);
    this.pos += n;
  }
}
