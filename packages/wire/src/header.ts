import { WireError } from "./errors.js";

/** Size in bytes of the vhost-user message header (request u32, flags u32, size u32; host order). */
export const HEADER_SIZE = 12;

/** Header flag bits (docs/protocol.md#message-header). Bits 0–1 hold the version, which must be 1. */
export const HeaderFlag = {
  /** Version field value (bits 0–1). */
  VERSION: 0x1,
  /** Mask of the version field. */
  VERSION_MASK: 0x3,
  /** Set on replies. */
  REPLY: 0x4,
  /** Sender asks for a REPLY_ACK status reply. */
  NEED_REPLY: 0x8,
  /** Bits 4–31: reserved, must be zero. */
  RESERVED_MASK: 0xffff_fff0,
} as const;

/** Decoded 12-byte header. All fields are u32 numbers; `size` counts payload bytes only. */
export interface MessageHeader {
  /** Request id (front-end or back-end table, depending on the channel). */
  readonly request: number;
  /** Raw flags word (version | REPLY | NEED_REPLY). */
  readonly flags: number;
  /** Payload length in bytes, header excluded. */
  readonly size: number;
}

/** True when the NEED_REPLY bit (0x8) is set in `header.flags`. */
export function needsReply(header: MessageHeader): boolean {
  return (header.flags & HeaderFlag.NEED_REPLY) !== 0;
}

/** True when the REPLY bit (0x4) is set in `header.flags`. */
export function isReply(header: MessageHeader): boolean {
  return (header.flags & HeaderFlag.REPLY) !== 0;
}

/**
 * Write a header at `offset` of `view` (little-endian host order).
 * @throws WireError `TRUNCATED` if fewer than 12 bytes remain; `BAD_VALUE` if a field is not a u32.
 */
export function writeHeader(view: DataView, offset: number, header: MessageHeader): void {
  if (offset < 0 || offset + HEADER_SIZE > view.byteLength) {
    throw new WireError("TRUNCATED", `header: need 0xc bytes at offset 0x${offset.toString(16)}`, {
      expected: HEADER_SIZE,
      actual: view.byteLength - offset,
      offset,
    });
  }
  for (const v of [header.request, header.flags, header.size]) {
    if (!Number.isInteger(v) || v < 0 || v > 0xffff_ffff) {
      throw new WireError("BAD_VALUE", `header: field value ${String(v)} is not a u32`, { actual: v });
    }
  }
  view.setUint32(offset, header.request, true);
  view.setUint32(offset + 4, header.flags, true);
  view.setUint32(offset + 8, header.size, true);
}

/**
 * Decode and validate the first 12 bytes of `bytes` (zero-copy; respects byteOffset/byteLength).
 * Does not check `size` against a limit or the request table: see `checkFrameSize`.
 * @throws WireError `TRUNCATED` (< 12 bytes), `BAD_VERSION` (version != 1), `RESERVED_FLAGS` (bits 4–31 set).
 */
export function decodeHeader(bytes: Uint8Array): MessageHeader {
  return readHeader(new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength));
}

/**
 * {@link decodeHeader} over an existing DataView of the frame (internal: lets the frame decoder
 * share one view between header and body).
 * @throws WireError as {@link decodeHeader}.
 */
export function readHeader(view: DataView): MessageHeader {
  if (view.byteLength < HEADER_SIZE) {
    throw new WireError("TRUNCATED", `header: 0x${view.byteLength.toString(16)} bytes, need 0xc`, {
      expected: HEADER_SIZE,
      actual: view.byteLength,
      offset: 0,
    });
  }
  const request = view.getUint32(0, true);
  const flags = view.getUint32(4, true);
  const size = view.getUint32(8, true);
  if ((flags & HeaderFlag.VERSION_MASK) !== HeaderFlag.VERSION) {
    throw new WireError("BAD_VERSION", `header: version ${flags & 3} in flags 0x${flags.toString(16)}, expected 1`, {
      expected: 1,
      actual: flags & 3,
      offset: 4,
    });
  }
  if ((flags & HeaderFlag.RESERVED_MASK) !== 0) {
    throw new WireError("RESERVED_FLAGS", `header: reserved bits set in flags 0x${(flags >>> 0).toString(16)}`, {
      actual: flags >>> 0,
      offset: 4,
    });
  }
  return { request, flags, size };
}
