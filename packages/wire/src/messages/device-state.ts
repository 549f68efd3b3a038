/**
 * Device state transfer payloads of SET_DEVICE_STATE_FD (docs/protocol.md#payload-layouts, docs/protocol.md#front-end-requests).
 * @module
 */
import { checkValue } from "../codec/checked-math.js";
import type { PayloadCodec } from "../codec/payload-codec.js";
import { fixedSize } from "../codec/payload-codec.js";

/** Transfer direction values (u32). */
export const DeviceStateDirection = {
  /** Back-end writes its state into the fd. */
  SAVE: 0,
  /** Back-end reads its state from the fd. */
  LOAD: 1,
} as const;

/** Device-state params (8 bytes): 0:u32 direction, 4:u32 phase (0 = stopped). Values are not checked here. */
export interface DeviceStateParams {
  /** See {@link DeviceStateDirection}. */
  readonly direction: number;
  /** Migration phase; 0 = stopped is the only one defined. */
  readonly phase: number;
}

/** Device-state params codec (8 bytes). */
export const DeviceStateParamsCodec: PayloadCodec<DeviceStateParams> = {
  ...fixedSize("device-state params", 8),
  encode(w, v) {
    w.u32(v.direction);
    w.u32(v.phase);
  },
  decode: (r) => ({ direction: r.u32(), phase: r.u32() }),
};

/** SET_DEVICE_STATE_FD reply u64: bits 0–7 error code (0 = ok), bit 8 = no fd returned, other bits 0. */
export interface DeviceStateReply {
  /** Error code 0–255; 0 = success. */
  readonly error: number;
  /** True when the back-end returns no fd (the front-end's fd is used). */
  readonly noFd: boolean;
}

/** Device-state reply codec (8 bytes). @throws WireError `BAD_VALUE` on bits 9–63 set or error > 255. */
export const DeviceStateReplyCodec: PayloadCodec<DeviceStateReply> = {
  ...fixedSize("device-state reply", 8),
  encode(w, v) {
    checkValue(Number.isInteger(v.error) && v.error >= 0 && v.error <= 0xff, w.request, () => `error code ${v.error} not in 0..255`, v.error);
    w.u64(BigInt(v.error) | (v.noFd ? 0x100n : 0n));
  },
  decode(r) {
    const v = r.u64();
    checkValue((v & ~0x1ffn) === 0n, r.request, () => `reserved bits set in device-state reply 0x${v.toString(16)}`, v);
    return { error: Number(v & 0xffn), noFd: (v & 0x100n) !== 0n };
  },
};
