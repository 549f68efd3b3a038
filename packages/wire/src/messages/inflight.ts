/**
 * Inflight payload of GET_INFLIGHT_FD / SET_INFLIGHT_FD (docs/protocol.md#payload-layouts, "inflight").
 * @module
 */
import { checkNoOverflow } from "../codec/checked-math.js";
import type { PayloadCodec } from "../codec/payload-codec.js";
import { fixedSize } from "../codec/payload-codec.js";

/** Inflight description (24 bytes): 0:u64 mmap_size, 8:u64 mmap_offset, 16:u16 num_queues, 18:u16 queue_size, 20–23 padding. */
export interface InflightInfo {
  /** Size in bytes of the inflight area in the fd (0 in a GET_INFLIGHT_FD request; 0 in a reply = no fd). */
  readonly mmapSize: bigint;
  /** Offset in bytes of the area in the fd. */
  readonly mmapOffset: bigint;
  /** Number of queues (u16). */
  readonly numQueues: number;
  /** Queue size (u16). */
  readonly queueSize: number;
}

/**
 * Inflight codec (24 bytes; QEMU and rust-vmm send the C struct size). Padding written as zero,
 * not checked on decode.
 * @throws WireError `OVERFLOW` when mmap_offset + mmap_size overflows u64.
 */
export const InflightCodec: PayloadCodec<InflightInfo> = {
  ...fixedSize("inflight", 24),
  encode(w, v) {
    checkNoOverflow(w.request, v.mmapOffset, v.mmapSize, "mmap_offset + mmap_size");
    w.u64(v.mmapSize);
    w.u64(v.mmapOffset);
    w.u16(v.numQueues);
    w.u16(v.queueSize);
    w.zeros(4);
  },
  decode(r) {
    const v = { mmapSize: r.u64(), mmapOffset: r.u64(), numQueues: r.u16(), queueSize: r.u16() };
    r.skip(4);
    checkNoOverflow(r.request, v.mmapOffset, v.mmapSize, "mmap_offset + mmap_size");
    return v;
  },
};
