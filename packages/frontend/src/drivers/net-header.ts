/**
 * virtio-net wire formats the driver needs (device id 1): feature bits, the 12-byte
 * `virtio_net_hdr_v1` that precedes every frame, the config space, and control queue commands.
 * @module
 */
import { FrontendError } from "../errors.js";

/** virtio-net feature bits the driver knows (bit numbers as bigint masks). */
export const NetFeature = {
  /** The device has a MAC address in its config space. */
  MAC: 1n << 5n,
  /** Receive buffers may be merged: a frame spans `num_buffers` buffers. */
  MRG_RXBUF: 1n << 15n,
  /** The config space has a link status. */
  STATUS: 1n << 16n,
  /** There is a control virtqueue. */
  CTRL_VQ: 1n << 17n,
  /** Several queue pairs, chosen with VIRTIO_NET_CTRL_MQ on the control queue. */
  MQ: 1n << 22n,
} as const;

/** Size of `virtio_net_hdr_v1` (VERSION_1: `num_buffers` is always present). */
export const NET_HEADER_SIZE = 12;

/** `status` bit of the config space: the link is up. */
export const NET_STATUS_LINK_UP = 1;

/** The virtio-net config space, as far as the bytes read reach (little-endian). */
export interface NetConfig {
  /** `mac` (bytes 0–5), when MAC was negotiated. */
  readonly mac: Uint8Array | undefined;
  /** `status` (u16 at 6), when STATUS was negotiated. */
  readonly status: number | undefined;
  /** `max_virtqueue_pairs` (u16 at 8), when MQ was negotiated. */
  readonly maxQueuePairs: number | undefined;
}

/** Decodes the fields of `config` that `features` make valid (a missing or short config gives `undefined` fields). */
export function decodeNetConfig(config: Uint8Array | undefined, features: bigint): NetConfig {
  const dv = config === undefined ? undefined : new DataView(config.buffer, config.byteOffset, config.byteLength);
  const has = (bit: bigint, end: number) => dv !== undefined && (features & bit) !== 0n && dv.byteLength >= end;
  return {
    mac: has(NetFeature.MAC, 6) ? (config as Uint8Array).slice(0, 6) : undefined,
    status: has(NetFeature.STATUS, 8) ? dv?.getUint16(6, true) : undefined,
    maxQueuePairs: has(NetFeature.MQ, 10) ? dv?.getUint16(8, true) : undefined,
  };
}

/** Writes a transmit header (no checksum or segmentation offload: all zero) at `at` of `bytes`. */
export function writeTxHeader(bytes: Uint8Array, at = 0): void {
  bytes.fill(0, at, at + NET_HEADER_SIZE);
}

/**
 * `num_buffers` of the receive header in the first buffer of a frame, checked: 1 without
 * MRG_RXBUF, 1..`posted` with it (a device cannot use buffers the driver has not posted).
 * @throws FrontendError `PROTOCOL`.
 */
export function rxNumBuffers(first: Uint8Array, usedLen: number, mergeable: boolean, posted: number): number {
  if (usedLen < NET_HEADER_SIZE)
    throw new FrontendError("PROTOCOL", `virtio-net rx: the device used ${usedLen} bytes, less than the ${NET_HEADER_SIZE}-byte header`, {
      request: "VIRTQUEUE",
      expected: NET_HEADER_SIZE,
      actual: usedLen,
    });
  if (!mergeable) return 1;
  const n = first[10]! | (first[11]! << 8);
  if (n < 1 || n > posted)
    throw new FrontendError("PROTOCOL", `virtio-net rx: num_buffers ${n} (1 to the ${posted} buffers posted)`, {
      request: "VIRTQUEUE",
      expected: posted,
      actual: n,
    });
  return n;
}

/** Control queue class and command of VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET. */
export const NET_CTRL_MQ = 4;
/** Command VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET of class {@link NET_CTRL_MQ}. */
export const NET_CTRL_MQ_VQ_PAIRS_SET = 0;
/** The device's ack: VIRTIO_NET_OK. */
export const NET_CTRL_OK = 0;

/** The device-readable part of VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET: class, command, `virtqueue_pairs` (u16). */
export function encodeMqPairsSet(pairs: number): Uint8Array {
  return Uint8Array.of(NET_CTRL_MQ, NET_CTRL_MQ_VQ_PAIRS_SET, pairs & 0xff, pairs >> 8);
}
