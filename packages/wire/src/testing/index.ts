/**
 * `@vhostkit/wire/testing`: helpers for tests of packages that sit on the wire codec (transport,
 * frontend, backend). Frames are built **by hand** here (header fields written byte by byte), so a
 * test that uses them checks the codec rather than repeating it. Not for production code.
 * @packageDocumentation
 */

/**
 * Little-endian lowercase hex of an unsigned integer `value` that fits `bytes` bytes (1, 2, 4, 8):
 * `leHex(0x1234, 4)` is `"34120000"`.
 * @throws RangeError when the value is negative or does not fit.
 */
export function leHex(value: number | bigint, bytes: number): string {
  const v = BigInt(value);
  if (v < 0n || v >= 1n << BigInt(8 * bytes)) throw new RangeError(`${String(value)} does not fit ${bytes} bytes`);
  const be = v.toString(16).padStart(2 * bytes, "0");
  let out = "";
  for (let i = be.length - 2; i >= 0; i -= 2) out += be.slice(i, i + 2);
  return out;
}

/**
 * Bytes of a hex string; whitespace and `|` separators are ignored (the style of docs/shmem.md#example-frames).
 * @throws RangeError on an odd length or a non-hex character.
 */
export function hexToBytes(hex: string): Uint8Array {
  const clean = hex.replaceAll(/[\s|]/gu, "");
  if (clean.length % 2 !== 0 || !/^[0-9a-fA-F]*$/u.test(clean)) throw new RangeError("hexToBytes: not an even-length hex string");
  const out = new Uint8Array(clean.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(clean.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** Lowercase hex of `bytes` (respects byteOffset/byteLength). */
export function bytesToHex(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += b.toString(16).padStart(2, "0");
  return s;
}

/**
 * A whole frame built by hand: 12-byte header (request u32, flags u32, size u32, little-endian)
 * then `payload`. `size` defaults to the payload length; pass another value to build a frame whose
 * header lies about its size.
 * @returns a new buffer owned by the caller.
 */
export function buildFrame(request: number, flags: number, payload: Uint8Array | string = new Uint8Array(0), size?: number): Uint8Array {
  const body = typeof payload === "string" ? hexToBytes(payload) : payload;
  return hexToBytes(leHex(request, 4) + leHex(flags, 4) + leHex(size ?? body.byteLength, 4) + bytesToHex(body));
}

/** A frame copied into the middle of a larger buffer filled with a sentinel byte. */
export interface SentinelFrame {
  /** The frame: a `subarray` of `buffer`. */
  readonly frame: Uint8Array;
  /** The whole buffer, sentinel bytes around the frame. */
  readonly buffer: Uint8Array;
  /** True when no sentinel byte changed (the code under test wrote nothing outside the frame). */
  sentinelsIntact(): boolean;
}

/**
 * Place `frame` between `pad` bytes of `sentinel` on each side, so a decoder under test gets a view
 * with a non-zero byteOffset (catches `new DataView(buf.buffer)` without the offset) and any write
 * outside the frame is detectable.
 */
export function inSentinelBuffer(frame: Uint8Array, pad = 16, sentinel = 0xa5): SentinelFrame {
  const buffer = new Uint8Array(frame.byteLength + 2 * pad).fill(sentinel);
  buffer.set(frame, pad);
  return {
    frame: buffer.subarray(pad, pad + frame.byteLength),
    buffer,
    sentinelsIntact(): boolean {
      for (let i = 0; i < pad; i++) if (buffer[i] !== sentinel || buffer[pad + frame.byteLength + i] !== sentinel) return false;
      return true;
    },
  };
}
