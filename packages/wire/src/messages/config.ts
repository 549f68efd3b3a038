/**
 * Device config payload of GET_CONFIG / SET_CONFIG (docs/protocol.md#payload-layouts, "config").
 * @module
 */
import { checkValue } from "../codec/checked-math.js";
import type { PayloadCodec } from "../codec/payload-codec.js";
import { WireError } from "../errors.js";
import { MAX_CONFIG_SIZE } from "../limits.js";

/** Config `flags` values as the spec and QEMU use them (rust-vmm uses bit flags WRITABLE=1, LIVE_MIGRATION=2). */
export const ConfigFlag = {
  /** Front-end write (the value to send). */
  WRITABLE: 0,
  /** Write during live migration. */
  LIVE_MIGRATION: 1,
} as const;

/**
 * Config payload: 0:u32 offset, 4:u32 size, 8:u32 flags, 12: data[size]. `data` is device config
 * space (little-endian per VIRTIO); the wire `size` is `data.byteLength`.
 */
export interface DeviceConfig {
  /** Byte offset into device config space. */
  readonly offset: number;
  /** u32 flags, see {@link ConfigFlag}; not interpreted here. */
  readonly flags: number;
  /**
   * Config bytes, at most {@link MAX_CONFIG_SIZE} (256). On decode a zero-copy `subarray` of the
   * frame, valid until the frame's buffer is reused; GET_CONFIG requests carry zero-filled data.
   */
  readonly data: Uint8Array;
}

/**
 * Config codec (12 + n bytes, n ≤ 256).
 * @throws WireError `BAD_SIZE` when the header size is not 12 + size; `BAD_VALUE` when size > 256;
 * `OVERFLOW` when offset + size exceeds u32.
 */
export const DeviceConfigCodec: PayloadCodec<DeviceConfig> = {
  layout: "config",
  minSize: 12,
  maxSize: 12 + MAX_CONFIG_SIZE,
  sizeOf: (v) => 12 + v.data.byteLength,
  encode(w, v) {
    const n = v.data.byteLength;
    checkValue(n <= MAX_CONFIG_SIZE, w.request, () => `config size ${n} exceeds ${MAX_CONFIG_SIZE}`, n);
    checkValue(v.offset + n <= 0xffff_ffff + 1, w.request, () => `config offset 0x${v.offset.toString(16)} + size overflows u32`, v.offset);
    w.u32(v.offset);
    w.u32(n);
    w.u32(v.flags);
    w.raw(v.data);
  },
  decode(r) {
    const offset = r.u32();
    const size = r.u32();
    const flags = r.u32();
    checkValue(size <= MAX_CONFIG_SIZE, r.request, () => `config size ${size} exceeds ${MAX_CONFIG_SIZE}`, size);
    r.requireLength([12 + size], `config size ${size}`);
    if (offset + size > 0xffff_ffff + 1) {
      throw new WireError("OVERFLOW", `${r.request}: config offset 0x${offset.toString(16)} + size 0x${size.toString(16)} overflows u32`, {
        request: r.request,
        actual: offset + size,
        offset: 0,
      });
    }
    return { offset, flags, data: r.bytesView(size) };
  },
};
