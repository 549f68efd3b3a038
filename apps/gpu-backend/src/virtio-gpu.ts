/**
 * virtio-gpu wire structures (VIRTIO 1.2 §5.7; docs/devices.md#virtio-gpu): command and response ids, formats,
 * blob constants, the 24-byte control header and the request layouts this sample decodes. Every
 * field is little-endian. Pure bytes, no I/O.
 * @module
 */

/** virtio device id of a GPU. */
export const VIRTIO_ID_GPU = 16;

/** virtio-gpu feature bits (bigint masks). */
export const GpuFeature = {
  VIRGL: 1n << 0n,
  EDID: 1n << 1n,
  RESOURCE_UUID: 1n << 2n,
  RESOURCE_BLOB: 1n << 3n,
  CONTEXT_INIT: 1n << 4n,
  BLOB_ALIGNMENT: 1n << 5n,
} as const;

/** Command types (`virtio_gpu_ctrl_type`, requests). */
export const GpuCmd = {
  GET_DISPLAY_INFO: 0x0100,
  RESOURCE_CREATE_2D: 0x0101,
  RESOURCE_UNREF: 0x0102,
  SET_SCANOUT: 0x0103,
  RESOURCE_FLUSH: 0x0104,
  TRANSFER_TO_HOST_2D: 0x0105,
  RESOURCE_ATTACH_BACKING: 0x0106,
  RESOURCE_DETACH_BACKING: 0x0107,
  GET_CAPSET_INFO: 0x0108,
  GET_CAPSET: 0x0109,
  GET_EDID: 0x010a,
  RESOURCE_ASSIGN_UUID: 0x010b,
  RESOURCE_CREATE_BLOB: 0x010c,
  SET_SCANOUT_BLOB: 0x010d,
  CTX_CREATE: 0x0200,
  CTX_DESTROY: 0x0201,
  CTX_ATTACH_RESOURCE: 0x0202,
  CTX_DETACH_RESOURCE: 0x0203,
  RESOURCE_CREATE_3D: 0x0204,
  TRANSFER_TO_HOST_3D: 0x0205,
  TRANSFER_FROM_HOST_3D: 0x0206,
  SUBMIT_3D: 0x0207,
  RESOURCE_MAP_BLOB: 0x0208,
  RESOURCE_UNMAP_BLOB: 0x0209,
  UPDATE_CURSOR: 0x0300,
  MOVE_CURSOR: 0x0301,
} as const;

/** Response types (`virtio_gpu_ctrl_type`, responses). */
export const GpuResp = {
  OK_NODATA: 0x1100,
  OK_DISPLAY_INFO: 0x1101,
  OK_CAPSET_INFO: 0x1102,
  OK_CAPSET: 0x1103,
  OK_EDID: 0x1104,
  OK_RESOURCE_UUID: 0x1105,
  OK_MAP_INFO: 0x1106,
  ERR_UNSPEC: 0x1200,
  ERR_OUT_OF_MEMORY: 0x1201,
  ERR_INVALID_SCANOUT_ID: 0x1202,
  ERR_INVALID_RESOURCE_ID: 0x1203,
  ERR_INVALID_CONTEXT_ID: 0x1204,
  ERR_INVALID_PARAMETER: 0x1205,
} as const;

/** A response type value. */
export type GpuRespType = (typeof GpuResp)[keyof typeof GpuResp];

/** Names of the response types, for messages and the CLI. */
export function respName(type: number): string {
  for (const [k, v] of Object.entries(GpuResp)) if (v === type) return k;
  return `0x${type.toString(16)}`;
}

/** `virtio_gpu_formats`: the 32-bit formats this sample accepts (4 bytes per pixel). */
export const GpuFormat = {
  B8G8R8A8_UNORM: 1,
  B8G8R8X8_UNORM: 2,
  A8R8G8B8_UNORM: 3,
  X8R8G8B8_UNORM: 4,
  R8G8B8A8_UNORM: 67,
  X8B8G8R8_UNORM: 68,
  A8B8G8R8_UNORM: 121,
  R8G8B8X8_UNORM: 134,
} as const;

/** Bytes per pixel of every supported format. */
export const BYTES_PER_PIXEL = 4;

/** True when `format` is one of {@link GpuFormat}. */
export function isGpuFormat(format: number): boolean {
  return Object.values(GpuFormat).includes(format as never);
}

/** Header flags. */
export const GpuFlag = { FENCE: 0x1, INFO_RING_IDX: 0x2 } as const;

/** Blob memory kinds (`blob_mem`). */
export const BlobMem = { GUEST: 1, HOST3D: 2, HOST3D_GUEST: 3 } as const;

/** Blob flags (`blob_flags`). */
export const BlobFlag = { USE_MAPPABLE: 0x1, USE_SHAREABLE: 0x2, USE_CROSS_DEVICE: 0x4 } as const;

/** `map_info` cache types (mask 0x0f). */
export const MapCache = { NONE: 0, CACHED: 1, UNCACHED: 2, WC: 3 } as const;

/** VIRTIO shmid of virtio-gpu's host-visible memory region. */
export const HOST_VISIBLE_SHMID = 1;

/** Most scanouts a virtio-gpu device may have. */
export const MAX_SCANOUTS = 16;

/** Size of `virtio_gpu_ctrl_hdr`. */
export const HDR_SIZE = 24;

/** Size of `virtio_gpu_resp_display_info` (hdr + 16 × pmode). */
export const DISPLAY_INFO_SIZE = HDR_SIZE + MAX_SCANOUTS * 24;

/** Size of one `virtio_gpu_mem_entry`. */
export const MEM_ENTRY_SIZE = 16;

/** Size of `virtio_gpu_resp_map_info`. */
export const MAP_INFO_SIZE = 32;

/** Size of `virtio_gpu_resp_capset_info` (hdr + capset_id, capset_max_version, capset_max_size, padding). */
export const CAPSET_INFO_SIZE = 40;

/** Longest `debug_name` of CTX_CREATE, bytes. */
export const CTX_DEBUG_NAME_MAX = 64;

/** `context_init` of CTX_CREATE: the capset id is in its low 8 bits; the other bits are reserved. */
export const CONTEXT_INIT_CAPSET_ID_MASK = 0xff;

/** Size of the device config (events_read, events_clear, num_scanouts, num_capsets, blob_alignment). */
export const CONFIG_SIZE = 20;

/** Total request sizes (header included) of the fixed-size commands (docs/devices.md#gpu-commands). */
export const REQUEST_SIZE: Readonly<Record<number, number>> = {
  [GpuCmd.GET_DISPLAY_INFO]: 24,
  [GpuCmd.RESOURCE_CREATE_2D]: 40,
  [GpuCmd.RESOURCE_UNREF]: 32,
  [GpuCmd.SET_SCANOUT]: 48,
  [GpuCmd.RESOURCE_FLUSH]: 48,
  [GpuCmd.TRANSFER_TO_HOST_2D]: 56,
  [GpuCmd.RESOURCE_ATTACH_BACKING]: 32,
  [GpuCmd.RESOURCE_DETACH_BACKING]: 32,
  [GpuCmd.GET_CAPSET_INFO]: 32,
  [GpuCmd.GET_CAPSET]: 32,
  [GpuCmd.GET_EDID]: 32,
  [GpuCmd.RESOURCE_ASSIGN_UUID]: 32,
  [GpuCmd.RESOURCE_CREATE_BLOB]: 56,
  [GpuCmd.SET_SCANOUT_BLOB]: 96,
  [GpuCmd.CTX_CREATE]: 96,
  [GpuCmd.CTX_DESTROY]: 24,
  [GpuCmd.CTX_ATTACH_RESOURCE]: 32,
  [GpuCmd.CTX_DETACH_RESOURCE]: 32,
  [GpuCmd.RESOURCE_CREATE_3D]: 72,
  [GpuCmd.TRANSFER_TO_HOST_3D]: 72,
  [GpuCmd.TRANSFER_FROM_HOST_3D]: 72,
  [GpuCmd.SUBMIT_3D]: 32,
  [GpuCmd.RESOURCE_MAP_BLOB]: 40,
  [GpuCmd.RESOURCE_UNMAP_BLOB]: 32,
  [GpuCmd.UPDATE_CURSOR]: 56,
  [GpuCmd.MOVE_CURSOR]: 56,
};

/** `virtio_gpu_ctrl_hdr`. */
export interface CtrlHdr {
  readonly type: number;
  readonly flags: number;
  /** u64. */
  readonly fenceId: bigint;
  readonly ctxId: number;
  readonly ringIdx: number;
}

/** `virtio_gpu_rect`: pixels, 0,0 top-left. */
export interface Rect {
  readonly x: number;
  readonly y: number;
  readonly width: number;
  readonly height: number;
}

/** A little-endian view over `b` (respects byteOffset/byteLength). */
export function le(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

/** Decodes the header at offset 0 (`b` must hold at least {@link HDR_SIZE} bytes). */
export function decodeHdr(b: Uint8Array): CtrlHdr {
  const v = le(b);
  return { type: v.getUint32(0, true), flags: v.getUint32(4, true), fenceId: v.getBigUint64(8, true), ctxId: v.getUint32(16, true), ringIdx: v.getUint8(20) };
}

/** Encodes a header into `b` at offset 0 (padding zeroed). */
export function encodeHdr(b: Uint8Array, h: CtrlHdr): void {
  const v = le(b);
  v.setUint32(0, h.type, true);
  v.setUint32(4, h.flags, true);
  v.setBigUint64(8, h.fenceId, true);
  v.setUint32(16, h.ctxId, true);
  v.setUint8(20, h.ringIdx);
  b.fill(0, 21, 24);
}

/** Decodes a rect at `offset`. */
export function decodeRect(v: DataView, offset: number): Rect {
  return { x: v.getUint32(offset, true), y: v.getUint32(offset + 4, true), width: v.getUint32(offset + 8, true), height: v.getUint32(offset + 12, true) };
}

/** Encodes a rect at `offset`. */
export function encodeRect(v: DataView, offset: number, r: Rect): void {
  v.setUint32(offset, r.x, true);
  v.setUint32(offset + 4, r.y, true);
  v.setUint32(offset + 8, r.width, true);
  v.setUint32(offset + 12, r.height, true);
}

/** True when `r` is non-empty and lies inside a `width` × `height` surface (no u32 overflow). */
export function rectInside(r: Rect, width: number, height: number): boolean {
  return r.width > 0 && r.height > 0 && r.x + r.width <= width && r.y + r.height <= height;
}
