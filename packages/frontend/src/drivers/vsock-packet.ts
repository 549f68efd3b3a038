/**
 * virtio-vsock packets (docs/virtio-vsock.md#packet-header): the 44-byte header, its operations
 * and flags, and the config space. Little-endian; the decoder checks every length it is given.
 * @module
 */
import { FrontendError } from "../errors.js";

/** Size of `virtio_vsock_hdr` in bytes. */
export const VSOCK_HEADER_SIZE = 44;

/** The host's CID (VMADDR_CID_HOST): where a guest's connections to the host go. */
export const VSOCK_HOST_CID = 2n;

/** `virtio_vsock_hdr.op` values, spelled as in the specification. */
export const VsockOp = {
  INVALID: 0,
  REQUEST: 1,
  RESPONSE: 2,
  RST: 3,
  SHUTDOWN: 4,
  RW: 5,
  CREDIT_UPDATE: 6,
  CREDIT_REQUEST: 7,
} as const;

/** `virtio_vsock_hdr.type`: stream sockets (the only type this driver speaks) and seqpacket. */
export const VsockType = { STREAM: 1, SEQPACKET: 2 } as const;

/** SHUTDOWN flags: the sender will receive no more (RCV) and/or send no more (SEND). */
export const VsockShutdown = { RCV: 1, SEND: 2 } as const;

/** virtio-vsock feature bits (bit masks). */
export const VsockFeature = { STREAM: 1n << 0n, SEQPACKET: 1n << 1n } as const;

/** Event queue event ids (`virtio_vsock_event.id`). */
export const VsockEventId = { TRANSPORT_RESET: 0 } as const;

/** A decoded `virtio_vsock_hdr`. CIDs are u64, ports and counters u32. */
export interface VsockHeader {
  readonly srcCid: bigint;
  readonly dstCid: bigint;
  readonly srcPort: number;
  readonly dstPort: number;
  /** Payload length in bytes (RW only; 0 otherwise). */
  readonly len: number;
  readonly type: number;
  readonly op: number;
  /** SHUTDOWN flags ({@link VsockShutdown}); 0 for other operations. */
  readonly flags: number;
  /** The sender's receive buffer size for this connection, bytes. */
  readonly bufAlloc: number;
  /** Bytes the sender's application has consumed from this connection (wraps at 2^32). */
  readonly fwdCnt: number;
}

/** Names of {@link VsockOp} values, for messages. */
const OP_NAMES = new Map<number, string>(Object.entries(VsockOp).map(([k, v]) => [v, k]));

/** The name of operation `op` (`RW`), or `OP_N`. */
export function vsockOpName(op: number): string {
  return OP_NAMES.get(op) ?? `OP_${op}`;
}

/** Encodes the header of a packet whose payload has `len` bytes (the payload goes in its own descriptor). */
export function encodeVsockHeader(h: Omit<VsockHeader, "len">, len = 0): Uint8Array {
  const b = new Uint8Array(VSOCK_HEADER_SIZE);
  const v = new DataView(b.buffer);
  v.setBigUint64(0, h.srcCid, true);
  v.setBigUint64(8, h.dstCid, true);
  v.setUint32(16, h.srcPort, true);
  v.setUint32(20, h.dstPort, true);
  v.setUint32(24, len, true);
  v.setUint16(28, h.type, true);
  v.setUint16(30, h.op, true);
  v.setUint32(32, h.flags, true);
  v.setUint32(36, h.bufAlloc, true);
  v.setUint32(40, h.fwdCnt, true);
  return b;
}

/**
 * Decodes a packet the device wrote into an rx chain of two buffers, the header's and the
 * payload's, `used` bytes in all. The header's `len` must equal what the device wrote after it.
 * @returns the header and a view of the payload (valid as long as `payloadBuffer`).
 * @throws FrontendError `PROTOCOL` for a short packet or a length that disagrees with the used length.
 */
export function decodeVsockPacket(
  headerBuffer: Uint8Array,
  payloadBuffer: Uint8Array,
  used: number,
): { readonly header: VsockHeader; readonly payload: Uint8Array } {
  if (headerBuffer.byteLength < VSOCK_HEADER_SIZE || used < VSOCK_HEADER_SIZE || used > VSOCK_HEADER_SIZE + payloadBuffer.byteLength) {
    throw new FrontendError(
      "PROTOCOL",
      `vsock rx: used length ${used} is not a packet of ${VSOCK_HEADER_SIZE} to ${VSOCK_HEADER_SIZE + payloadBuffer.byteLength} bytes`,
      { request: "VSOCK_RX", actual: used },
    );
  }
  const v = new DataView(headerBuffer.buffer, headerBuffer.byteOffset, VSOCK_HEADER_SIZE);
  const header: VsockHeader = {
    srcCid: v.getBigUint64(0, true),
    dstCid: v.getBigUint64(8, true),
    srcPort: v.getUint32(16, true),
    dstPort: v.getUint32(20, true),
    len: v.getUint32(24, true),
    type: v.getUint16(28, true),
    op: v.getUint16(30, true),
    flags: v.getUint32(32, true),
    bufAlloc: v.getUint32(36, true),
    fwdCnt: v.getUint32(40, true),
  };
  if (header.len !== used - VSOCK_HEADER_SIZE) {
    throw new FrontendError(
      "PROTOCOL",
      `vsock rx: ${vsockOpName(header.op)} header says ${header.len} payload bytes, the device wrote ${used - VSOCK_HEADER_SIZE}`,
      { request: "VSOCK_RX", expected: used - VSOCK_HEADER_SIZE, actual: header.len },
    );
  }
  return { header, payload: payloadBuffer.subarray(0, header.len) };
}

/** The guest CID from the virtio-vsock config space (u64 at 0), or `undefined` when shorter. */
export function decodeVsockConfig(bytes: Uint8Array): bigint | undefined {
  return bytes.byteLength < 8 ? undefined : new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
}
