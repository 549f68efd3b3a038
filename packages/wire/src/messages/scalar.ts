/**
 * Scalar payloads (docs/protocol.md#payload-layouts): no payload, a single u64, and opaque bytes.
 * @module
 */
import type { PayloadCodec } from "../codec/payload-codec.js";
import { fixedSize } from "../codec/payload-codec.js";

/** No payload (header `size` 0). The value is `undefined`. */
export const Empty: PayloadCodec<undefined> = {
  ...fixedSize("empty", 0),
  encode: () => undefined,
  decode: () => undefined,
};

/**
 * One u64 (8 bytes, little-endian) as a `bigint`: feature words, REPLY_ACK status (0 = success),
 * queue counts, status byte, MTU, crypto session id (docs/protocol.md#payload-layouts, "u64").
 */
export const U64: PayloadCodec<bigint> = {
  ...fixedSize("u64", 8),
  encode: (w, v) => w.u64(v),
  decode: (r) => r.u64(),
};

/**
 * Opaque bytes of any length, for payloads vhostkit does not interpret (CREATE_CRYPTO_SESSION's
 * QEMU-private struct, docs/protocol.md#front-end-requests). Decoding returns a zero-copy `subarray` of the frame,
 * valid until its buffer is reused. The transport cap (`maxPayload`) bounds the size.
 */
export const Opaque: PayloadCodec<Uint8Array> = {
  layout: "opaque bytes",
  minSize: 0,
  maxSize: 0xffff_ffff,
  sizeOf: (v) => v.byteLength,
  encode: (w, v) => w.raw(v),
  decode: (r) => r.bytesView(r.remaining),
};
