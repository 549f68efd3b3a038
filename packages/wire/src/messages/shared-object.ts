/**
 * Shared object payload (16-byte UUID, docs/protocol.md#payload-layouts) of GET_SHARED_OBJECT and the
 * BACKEND_SHARED_OBJECT_* requests.
 * @module
 */
import type { PayloadCodec } from "../codec/payload-codec.js";
import { fixedSize } from "../codec/payload-codec.js";
import { WireError } from "../errors.js";

/** A shared object UUID: 16 raw bytes (the first three fields u32, u16, u16 big-endian, as RFC 4122). */
export interface SharedObject {
  /** Exactly 16 bytes. On decode a zero-copy `subarray` of the frame, valid until its buffer is reused. */
  readonly uuid: Uint8Array;
}

/** Shared object codec (16 bytes). @throws WireError `BAD_VALUE` on encode when `uuid` is not 16 bytes. */
export const SharedObjectCodec: PayloadCodec<SharedObject> = {
  ...fixedSize("shared object", 16),
  encode(w, v) {
    if (v.uuid.byteLength !== 16) {
      throw new WireError("BAD_VALUE", `${w.request}: uuid is ${v.uuid.byteLength} bytes, expected 16`, {
        request: w.request,
        expected: 16,
        actual: v.uuid.byteLength,
      });
    }
    w.raw(v.uuid);
  },
  decode: (r) => ({ uuid: r.bytesView(16) }),
};

/**
 * GET_SHARED_OBJECT reply payload: 0 bytes (rust-vmm; value `undefined`) or the 16-byte UUID echo
 * (libvhost-user). QEMU ignores it; the dma-buf travels as the reply's fd.
 */
export const SharedObjectReplyCodec: PayloadCodec<SharedObject | undefined> = {
  layout: "empty or shared object",
  minSize: 0,
  maxSize: 16,
  sizeOf: (v) => (v === undefined ? 0 : 16),
  encode(w, v) {
    if (v !== undefined) SharedObjectCodec.encode(w, v);
  },
  decode(r) {
    r.requireLength([0, 16], "reply");
    if (r.length === 0) return undefined;
    return SharedObjectCodec.decode(r);
  },
};
