import { WireError } from "../errors.js";

/**
 * Bounds-checked little-endian reader over `(buffer, byteOffset, byteLength)` of a Uint8Array.
 * Every read checks the remaining length and throws `WireError` `TRUNCATED`; it never reads outside
 * the view. Byte runs come back as zero-copy `subarray` views, valid as long as the source buffer is.
 */
export class ByteReader {
  /** Source bytes (borrowed): the payload, or a whole frame of which `[start, end)` is the payload. */
  readonly bytes: Uint8Array;
  /** View over exactly `bytes`. */
  readonly view: DataView;
  /** Spec name of the request being decoded, for error messages. */
  readonly request: string;
  /** First payload byte, as an index into `bytes`. */
  readonly start: number;
  /** One past the last payload byte, as an index into `bytes`. */
  readonly end: number;
  /** Current read position, as an index into `bytes` (starts at `start`). */
  pos: number;

  /**
   * @param bytes - borrowed for the reader's lifetime; views it returns share its buffer.
   * @param request - spec request name used in errors.
   * @param start - index of the first payload byte in `bytes` (default 0).
   * @param end - index one past the payload (default `bytes.byteLength`); clamped to `bytes`.
   * @param view - an existing DataView over exactly `bytes`, to avoid allocating another.
   */
  constructor(bytes: Uint8Array, request: string, start = 0, end = bytes.byteLength, view?: DataView) {
    this.bytes = bytes;
    this.view = view ?? new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.request = request;
    this.start = Math.max(0, Math.min(start, bytes.byteLength));
    this.end = Math.max(this.start, Math.min(end, bytes.byteLength));
    this.pos = this.start;
  }

  /** Payload length in bytes (`end - start`). */
  get length(): number {
    return this.end - this.start;
  }

  /** Bytes not yet read. */
  get remaining(): number {
    return this.end - this.pos;
  }

  /** @throws WireError `TRUNCATED` when fewer than `n` bytes remain. */
  need(n: number): void {
    if (n > this.end - this.pos) {
      const at = this.pos - this.start;
      throw new WireError(
        "TRUNCATED",
        `${this.request}: need 0x${n.toString(16)} bytes at offset 0x${at.toString(16)}, have 0x${this.remaining.toString(16)}`,
        { request: this.request, expected: n, actual: this.remaining, offset: at },
      );
    }
  }

  /** Read a u8. */
  u8(): number {
    this.need(1);
    return this.view.getUint8(this.pos++);
  }

  /** Read a little-endian u16. */
  u16(): number {
    this.need(2);
    const v = this.view.getUint16(this.pos, true);
    this.pos += 2;
    return v;
  }

  /** Read a little-endian u32. */
  u32(): number {
    this.need(4);
    const v = this.view.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }

  /** Read a little-endian u64 as bigint. */
  u64(): bigint {
    this.need(8);
    const v = this.view.getBigUint64(this.pos, true);
    this.pos += 8;
    return v;
  }

  /** Zero-copy view of the next `n` bytes. */
  bytesView(n: number): Uint8Array {
    this.need(n);
    const v = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }

  /** Skip `n` padding bytes (content not checked). */
  skip(n: number): void {
    this.need(n);
    this.pos += n;
  }

  /** Skip `n` padding bytes that must be zero. @throws WireError `NONZERO_PADDING`. */
  zeros(n: number): void {
    this.need(n);
    for (let i = 0; i < n; i++) {
      if (this.bytes[this.pos + i] !== 0) {
        throw new WireError("NONZERO_PADDING", `${this.request}: non-zero padding at offset 0x${(this.pos + i - this.start).toString(16)}`, {
          request: this.request,
          offset: this.pos + i - this.start,
        });
      }
    }
    this.pos += n;
  }

  /**
   * Require the whole payload to be one of `allowed` byte lengths; `what` explains the rule.
   * @throws WireError `BAD_SIZE`.
   */
  requireLength(allowed: readonly number[], what: string): void {
    const n = this.end - this.start;
    if (!allowed.includes(n)) {
      const expected = allowed.map((a) => `0x${a.toString(16)}`).join(" or ");
      throw new WireError("BAD_SIZE", `${this.request}: ${what} needs ${expected} bytes, payload is 0x${n.toString(16)}`, {
        request: this.request,
        expected: allowed.length === 1 ? (allowed[0] as number) : allowed.join(" or "),
        actual: n,
      });
    }
  }

  /** @throws WireError `BAD_SIZE` when unread bytes remain. */
  finish(): void {
    if (this.pos !== this.end) {
      const used = this.pos - this.start;
      throw new WireError("BAD_SIZE", `${this.request}: payload is 0x${this.length.toString(16)} bytes, expected 0x${used.toString(16)}`, {
        request: this.request,
        expected: used,
        actual: this.length,
      });
    }
  }
}

// vhost-user frames are host order; vhostkit always passes `true` (little-endian) to DataView, so
// refuse to load on a big-endian host rather than mis-decode every frame (docs/style.md#binary-codecs).
if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
  throw new WireError("BAD_VALUE", "@vhostkit/wire supports little-endian hosts only");
}
