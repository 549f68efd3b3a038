/**
 * IOTLB payload (`struct vhost_iotlb_msg`, docs/protocol.md#payload-layouts) of IOTLB_MSG and BACKEND_IOTLB_MSG.
 * @module
 */
import { checkNoOverflow, checkValue } from "../codec/checked-math.js";
import type { PayloadCodec } from "../codec/payload-codec.js";
import { fixedSize } from "../codec/payload-codec.js";

/** IOTLB `perm` values (u8). */
export const IotlbPerm = {
  /** No access (used with invalidate). */
  NONE: 0,
  /** Read. */
  RO: 1,
  /** Write. */
  WO: 2,
  /** Read and write. */
  RW: 3,
} as const;

/** IOTLB `type` values (u8). */
export const IotlbType = {
  /** Back-end: translation miss. */
  MISS: 1,
  /** Front-end: add a translation. */
  UPDATE: 2,
  /** Front-end: drop translations. */
  INVALIDATE: 3,
  /** Back-end: access failed. */
  ACCESS_FAIL: 4,
} as const;

/** IOTLB message (32 bytes): 0:u64 iova, 8:u64 size, 16:u64 uaddr, 24:u8 perm, 25:u8 type, 26–31 padding. */
export interface IotlbMsg {
  /** I/O virtual address. */
  readonly iova: bigint;
  /** Length in bytes. */
  readonly size: bigint;
  /** Front-end user address (a GPA with GPA_ADDRESSES, except in BACKEND_IOTLB_MSG). */
  readonly uaddr: bigint;
  /** Access, see {@link IotlbPerm} (0–3). */
  readonly perm: number;
  /** Message type, see {@link IotlbType} (1–4). */
  readonly type: number;
}

function validateIotlb(request: string, v: IotlbMsg): void {
  checkValue(v.perm >= 0 && v.perm <= 3, request, () => `iotlb perm ${v.perm} not in 0..3`, v.perm);
  checkValue(v.type >= 1 && v.type <= 4, request, () => `iotlb type ${v.type} not in 1..4`, v.type);
  checkNoOverflow(request, v.iova, v.size, "iova + size");
}

/**
 * IOTLB codec (32 bytes). Padding is written as zero and not checked on decode (the C struct hole).
 * @throws WireError `BAD_VALUE` (perm > 3, type not 1..4), `OVERFLOW` (iova + size).
 */
export const IotlbCodec: PayloadCodec<IotlbMsg> = {
  ...fixedSize("iotlb", 32),
  encode(w, v) {
    validateIotlb(w.request, v);
    w.u64(v.iova);
    w.u64(v.size);
    w.u64(v.uaddr);
    w.u8(v.perm);
    w.u8(v.type);
    w.zeros(6);
  },
  decode(r) {
    const v: IotlbMsg = { iova: r.u64(), size: r.u64(), uaddr: r.u64(), perm: r.u8(), type: r.u8() };
    r.skip(6);
    validateIotlb(r.request, v);
    return v;
  },
};
