/**
 * The driver's side of virtio-gpu (VIRTIO 1.2 §5.7; docs/devices.md#gpu-commands): request encoders and
 * response decoders, little-endian. Written independently of the sample back-end's decoder, so the
 * two check each other.
 */

/**
 * virtio-gpu feature bits (docs/devices.md#virtio-gpu; BLOB_ALIGNMENT is VIRTIO 1.4). The sample back-end
 * keeps its own table: the two sides are written independently so that they check each other.
 */
export const GpuFeature = {
  VIRGL: 1n << 0n,
  EDID: 1n << 1n,
  RESOURCE_UUID: 1n << 2n,
  RESOURCE_BLOB: 1n << 3n,
  CONTEXT_INIT: 1n << 4n,
  BLOB_ALIGNMENT: 1n << 5n,
} as const;

/** Request types used by the driver. */
export const Cmd = {
  GET_DISPLAY_INFO: 0x0100,
  RESOURCE_CREATE_2D: 0x0101,
  RESOURCE_UNREF: 0x0102,
  SET_SCANOUT: 0x0103,
  RESOURCE_FLUSH: 0x0104,
  TRANSFER_TO_HOST_2D: 0x0105,
  RESOURCE_ATTACH_BACKING: 0x0106,
  RESOURCE_DETACH_BACKING: 0x0107,
  RESOURCE_CREATE_BLOB: 0x010c,
  SET_SCANOUT_BLOB: 0x010d,
  RESOURCE_MAP_BLOB: 0x0208,
  RESOURCE_UNMAP_BLOB: 0x0209,
  UPDATE_CURSOR: 0x0300,
  MOVE_CURSOR: 0x0301,
} as const;

/** Response types. */
export const Resp = {
  OK_NODATA: 0x1100,
  OK_DISPLAY_INFO: 0x1101,
  OK_MAP_INFO: 0x1106,
  ERR_UNSPEC: 0x1200,
  ERR_OUT_OF_MEMORY: 0x1201,
  ERR_INVALID_SCANOUT_ID: 0x1202,
  ERR_INVALID_RESOURCE_ID: 0x1203,
  ERR_INVALID_CONTEXT_ID: 0x1204,
  ERR_INVALID_PARAMETER: 0x1205,
} as const;

/** `B8G8R8X8_UNORM`: bytes B, G, R, X in memory (what Linux's fbdev uses). */
export const FORMAT_BGRX = 2;
/** `R8G8B8A8_UNORM`: bytes R, G, B, A in memory. */
export const FORMAT_RGBA = 67;
/** blob_mem HOST3D (host memory). */
export const BLOB_MEM_HOST3D = 2;
/** blob_flags USE_MAPPABLE. */
export const BLOB_FLAG_MAPPABLE = 1;
/** Header flag FENCE. */
export const FLAG_FENCE = 1;

/** A rectangle in pixels. */
export interface GpuRect {
  readonly x: number;
  readonly y: number;
  readonly width: number;
  readonly height: number;
}

/** Optional header fields of a request. */
export interface HdrFields {
  readonly flags?: number;
  readonly fenceId?: bigint;
}

function request(type: number, size: number, h: HdrFields = {}): { bytes: Uint8Array; v: DataView } {
  const bytes = new Uint8Array(size);
  const v = new DataView(bytes.buffer);
  v.setUint32(0, type, true);
  v.setUint32(4, h.flags ?? 0, true);
  v.setBigUint64(8, h.fenceId ?? 0n, true);
  return { bytes, v };
}

function putRect(v: DataView, at: number, r: GpuRect): void {
  v.setUint32(at, r.x, true);
  v.setUint32(at + 4, r.y, true);
  v.setUint32(at + 8, r.width, true);
  v.setUint32(at + 12, r.height, true);
}

/** A request that is a header plus u32 words from offset 24. */
function words(type: number, size: number, values: readonly number[], h?: HdrFields): Uint8Array {
  const { bytes, v } = request(type, size, h);
  values.forEach((x, i) => v.setUint32(24 + 4 * i, x, true));
  return bytes;
}

/** Request encoders, one per command. */
export const encode = {
  getDisplayInfo: (h?: HdrFields): Uint8Array => request(Cmd.GET_DISPLAY_INFO, 24, h).bytes,
  create2d: (id: number, format: number, width: number, height: number, h?: HdrFields): Uint8Array =>
    words(Cmd.RESOURCE_CREATE_2D, 40, [id, format, width, height], h),
  unref: (id: number, h?: HdrFields): Uint8Array => words(Cmd.RESOURCE_UNREF, 32, [id], h),
  detachBacking: (id: number, h?: HdrFields): Uint8Array => words(Cmd.RESOURCE_DETACH_BACKING, 32, [id], h),
  unmapBlob: (id: number, h?: HdrFields): Uint8Array => words(Cmd.RESOURCE_UNMAP_BLOB, 32, [id], h),
  setScanout: (scanoutId: number, id: number, rect: GpuRect, h?: HdrFields): Uint8Array => {
    const { bytes, v } = request(Cmd.SET_SCANOUT, 48, h);
    putRect(v, 24, rect);
    v.setUint32(40, scanoutId, true);
    v.setUint32(44, id, true);
    return bytes;
  },
  flush: (id: number, rect: GpuRect, h?: HdrFields): Uint8Array => {
    const { bytes, v } = request(Cmd.RESOURCE_FLUSH, 48, h);
    putRect(v, 24, rect);
    v.setUint32(40, id, true);
    return bytes;
  },
  transfer: (id: number, rect: GpuRect, offset: bigint, h?: HdrFields): Uint8Array => {
    const { bytes, v } = request(Cmd.TRANSFER_TO_HOST_2D, 56, h);
    putRect(v, 24, rect);
    v.setBigUint64(40, offset, true);
    v.setUint32(48, id, true);
    return bytes;
  },
  attachBacking: (id: number, entries: readonly { readonly addr: bigint; readonly len: number }[], h?: HdrFields): Uint8Array => {
    const { bytes, v } = request(Cmd.RESOURCE_ATTACH_BACKING, 32 + 16 * entries.length, h);
    v.setUint32(24, id, true);
    v.setUint32(28, entries.length, true);
    entries.forEach((e, i) => {
      v.setBigUint64(32 + 16 * i, e.addr, true);
      v.setUint32(40 + 16 * i, e.len, true);
    });
    return bytes;
  },
  createBlob: (
    id: number,
    size: bigint,
    o: { readonly blobMem?: number; readonly flags?: number; readonly blobId?: bigint } = {},
    h?: HdrFields,
  ): Uint8Array => {
    const { bytes, v } = request(Cmd.RESOURCE_CREATE_BLOB, 56, h);
    v.setUint32(24, id, true);
    v.setUint32(28, o.blobMem ?? BLOB_MEM_HOST3D, true);
    v.setUint32(32, o.flags ?? BLOB_FLAG_MAPPABLE, true);
    v.setBigUint64(40, o.blobId ?? 0n, true);
    v.setBigUint64(48, size, true);
    return bytes;
  },
  setScanoutBlob: (
    scanoutId: number,
    id: number,
    s: { readonly rect: GpuRect; readonly width: number; readonly height: number; readonly format: number; readonly stride: number; readonly offset?: number },
    h?: HdrFields,
  ): Uint8Array => {
    const { bytes, v } = request(Cmd.SET_SCANOUT_BLOB, 96, h);
    putRect(v, 24, s.rect);
    [scanoutId, id, s.width, s.height, s.format].forEach((x, i) => v.setUint32(40 + 4 * i, x, true));
    v.setUint32(64, s.stride, true);
    v.setUint32(80, s.offset ?? 0, true);
    return bytes;
  },
  mapBlob: (id: number, offset: bigint, h?: HdrFields): Uint8Array => {
    const { bytes, v } = request(Cmd.RESOURCE_MAP_BLOB, 40, h);
    v.setUint32(24, id, true);
    v.setBigUint64(32, offset, true);
    return bytes;
  },
  cursor: (
    type: typeof Cmd.UPDATE_CURSOR | typeof Cmd.MOVE_CURSOR,
    p: { readonly scanoutId: number; readonly x: number; readonly y: number; readonly id?: number; readonly hotX?: number; readonly hotY?: number },
    h?: HdrFields,
  ): Uint8Array => words(type, 56, [p.scanoutId, p.x, p.y, 0, p.id ?? 0, p.hotX ?? 0, p.hotY ?? 0], h),
};

/** The response header. */
export interface RespHdr {
  readonly type: number;
  readonly flags: number;
  readonly fenceId: bigint;
}

/** Decodes a response header (`b` shorter than 24 bytes → type 0). */
export function respHdr(b: Uint8Array): RespHdr {
  if (b.byteLength < 24) return { type: 0, flags: 0, fenceId: 0n };
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return { type: v.getUint32(0, true), flags: v.getUint32(4, true), fenceId: v.getBigUint64(8, true) };
}

/** Name of a response type. */
export function respName(type: number): string {
  for (const [k, v] of Object.entries(Resp)) if (v === type) return k;
  return `0x${type.toString(16)}`;
}

/** One display mode of OK_DISPLAY_INFO. */
export interface DisplayMode {
  readonly scanoutId: number;
  readonly rect: GpuRect;
  readonly enabled: boolean;
}

/** Decodes OK_DISPLAY_INFO (408 bytes) into its enabled modes. */
export function decodeDisplayInfo(b: Uint8Array): DisplayMode[] {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const out: DisplayMode[] = [];
  for (let i = 0; i < 16 && 24 + 24 * i + 24 <= b.byteLength; i++) {
    const at = 24 + 24 * i;
    const enabled = v.getUint32(at + 16, true) !== 0;
    if (enabled)
      out.push({
        scanoutId: i,
        enabled,
        rect: { x: v.getUint32(at, true), y: v.getUint32(at + 4, true), width: v.getUint32(at + 8, true), height: v.getUint32(at + 12, true) },
      });
  }
  return out;
}

/** `map_info` of OK_MAP_INFO (cache type in bits 0–3). */
export function decodeMapInfo(b: Uint8Array): number {
  return b.byteLength >= 28 ? new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(24, true) : -1;
}
