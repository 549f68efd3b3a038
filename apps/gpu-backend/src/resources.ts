/**
 * The device's state: resources (2D with guest backing, host blobs), rendering contexts, scanouts, the
 * cursor, the live blob mappings in shmid 1, and host-memory accounting. Shared by the control and
 * cursor queues.
 * @module
 */
import type { GuestAddress } from "@vhostkit/regions";
import type { HostBlob } from "./host-blob.js";
import { BYTES_PER_PIXEL, GpuFormat, type Rect } from "./virtio-gpu.js";

/** One `virtio_gpu_mem_entry` of a 2D resource's backing (guest RAM). */
export interface BackingEntry {
  /** Guest-physical address. */
  readonly addr: GuestAddress;
  /** Bytes. */
  readonly len: number;
}

/** A 2D resource: host pixels (format-native byte order), optionally backed by guest pages. */
export interface Resource2D {
  readonly kind: "2d";
  readonly id: number;
  readonly format: number;
  readonly width: number;
  readonly height: number;
  /** width × height × 4 bytes, row-major, stride width × 4. */
  readonly pixels: Uint8Array;
  /** RESOURCE_ATTACH_BACKING entries, or `undefined` when detached. */
  backing: readonly BackingEntry[] | undefined;
}

/** A host blob resource (blob_mem HOST3D): a memfd the driver reaches through shmid 1 once mapped. */
export interface BlobResource {
  readonly kind: "blob";
  readonly id: number;
  readonly blobFlags: number;
  /** Size the driver asked for, bytes. */
  readonly size: bigint;
  readonly blob: HostBlob;
  /**
   * Where the blob is mapped in shmid 1 (offset, page-rounded length), or `undefined`. `uncertain`:
   * the device stopped while the map waited for its reply, so the front-end may or may not have
   * applied it; the range stays reserved until an unmap or a reset settles it. `restore`: loaded from
   * a saved device state, not yet mapped by this front-end; the device maps it when it next starts.
   */
  mapping: { readonly offset: bigint; readonly len: bigint; readonly uncertain?: boolean; readonly restore?: boolean } | undefined;
}

/** A resource. */
export type Resource = Resource2D | BlobResource;

/** Geometry of a blob-backed scanout (SET_SCANOUT_BLOB). */
export interface BlobLayout {
  readonly format: number;
  readonly width: number;
  readonly height: number;
  /** Bytes per row. */
  readonly stride: number;
  /** Offset of the first pixel in the blob, bytes. */
  readonly offset: number;
}

/** What a scanout shows: the `rect` of a resource (of `layout` for a blob). */
export interface Scanout {
  readonly resourceId: number;
  readonly rect: Rect;
  readonly layout: BlobLayout | undefined;
}

/** One rendered scanout, RGBA 8 bits per channel, `width × height × 4` bytes. */
export interface Frame {
  readonly scanoutId: number;
  readonly resourceId: number;
  readonly width: number;
  readonly height: number;
  readonly rgba: Uint8Array;
}

/** Byte positions of R, G, B, A (or -1 for X) inside one pixel, per format (names are memory byte order). */
const CHANNELS: Readonly<Record<number, readonly [number, number, number, number]>> = {
  [GpuFormat.B8G8R8A8_UNORM]: [2, 1, 0, 3],
  [GpuFormat.B8G8R8X8_UNORM]: [2, 1, 0, -1],
  [GpuFormat.A8R8G8B8_UNORM]: [1, 2, 3, 0],
  [GpuFormat.X8R8G8B8_UNORM]: [1, 2, 3, -1],
  [GpuFormat.R8G8B8A8_UNORM]: [0, 1, 2, 3],
  [GpuFormat.X8B8G8R8_UNORM]: [3, 2, 1, -1],
  [GpuFormat.A8B8G8R8_UNORM]: [3, 2, 1, 0],
  [GpuFormat.R8G8B8X8_UNORM]: [0, 1, 2, -1],
};

/**
 * Converts `rect` of a surface (`src` from `offset`, `stride` bytes per row, `format`) to RGBA.
 * The caller has checked that the rect lies inside the surface.
 */
export function toRgba(src: Uint8Array, offset: number, stride: number, format: number, rect: Rect): Uint8Array {
  const [r, g, b, a] = CHANNELS[format] ?? [0, 1, 2, 3];
  const out = new Uint8Array(rect.width * rect.height * 4);
  let o = 0;
  for (let y = 0; y < rect.height; y++) {
    let p = offset + (rect.y + y) * stride + rect.x * BYTES_PER_PIXEL;
    for (let x = 0; x < rect.width; x++, p += 4) {
      out[o++] = src[p + r] as number;
      out[o++] = src[p + g] as number;
      out[o++] = src[p + b] as number;
      out[o++] = a < 0 ? 255 : (src[p + a] as number);
    }
  }
  return out;
}

/** The cursor (cursorq): image resource, hot spot, position. */
export interface CursorState {
  resourceId: number;
  scanoutId: number;
  x: number;
  y: number;
  hotX: number;
  hotY: number;
}

/** A rendering context (CTX_CREATE): its capset (0: none) and the resources attached to it. */
export interface GpuContext {
  readonly id: number;
  /** Capset id from `context_init` (0 when the driver named none). */
  readonly capsetId: number;
  /** `debug_name`, as far as it is printable ASCII. */
  readonly name: string;
  /** Resources attached with CTX_ATTACH_RESOURCE. */
  readonly resources: Set<number>;
}

/** Mutable device state. {@link GpuState.clear} returns to the post-reset state. */
export class GpuState {
  /** Resources by id (id 0 is never used). */
  readonly resources = new Map<number, Resource>();
  /** Scanouts, `undefined` when disabled. */
  readonly scanouts: (Scanout | undefined)[];
  /** Cursor state. */
  readonly cursor: CursorState = { resourceId: 0, scanoutId: 0, x: 0, y: 0, hotX: 0, hotY: 0 };
  /** Rendering contexts by id (id 0 is never used). */
  readonly contexts = new Map<number, GpuContext>();
  /** Host bytes in use by resources (2D pixels + blobs). */
  hostBytes = 0n;

  /** @param numScanouts - 1..16. */
  constructor(numScanouts: number) {
    this.scanouts = new Array<Scanout | undefined>(numScanouts).fill(undefined);
  }

  /** Live mappings in shmid 1 (sorted by offset). */
  mappings(): { readonly resourceId: number; readonly offset: bigint; readonly len: bigint }[] {
    const out: { resourceId: number; offset: bigint; len: bigint }[] = [];
    for (const r of this.resources.values()) if (r.kind === "blob" && r.mapping !== undefined) out.push({ resourceId: r.id, ...r.mapping });
    return out.sort((a, b) => (a.offset < b.offset ? -1 : 1));
  }

  /** Drops one resource: scanouts showing it are disabled, the cursor hidden, host memory released. */
  remove(id: number): void {
    const r = this.resources.get(id);
    if (r === undefined) return;
    this.resources.delete(id);
    this.scanouts.forEach((s, i) => {
      if (s?.resourceId === id) this.scanouts[i] = undefined;
    });
    if (this.cursor.resourceId === id) this.cursor.resourceId = 0;
    for (const c of this.contexts.values()) c.resources.delete(id);
    if (r.kind === "blob") {
      this.hostBytes -= r.blob.size;
      r.blob.dispose();
    } else {
      this.hostBytes -= BigInt(r.pixels.byteLength);
    }
  }

  /** Drops every resource, context and scanout (device reset). */
  clear(): void {
    for (const id of [...this.resources.keys()]) this.remove(id);
    this.contexts.clear();
    this.scanouts.fill(undefined);
    Object.assign(this.cursor, { resourceId: 0, scanoutId: 0, x: 0, y: 0, hotX: 0, hotY: 0 });
    this.hostBytes = 0n;
  }

  /** Renders scanout `i`, or `undefined` when it is disabled. */
  render(i: number): Frame | undefined {
    const s = this.scanouts[i];
    const r = s === undefined ? undefined : this.resources.get(s.resourceId);
    if (s === undefined || r === undefined) return undefined;
    const rgba =
      r.kind === "2d"
        ? toRgba(r.pixels, 0, r.width * BYTES_PER_PIXEL, r.format, s.rect)
        : toRgba(r.blob.bytes, s.layout?.offset ?? 0, s.layout?.stride ?? 0, s.layout?.format ?? GpuFormat.B8G8R8A8_UNORM, s.rect);
    return { scanoutId: i, resourceId: r.id, width: s.rect.width, height: s.rect.height, rgba };
  }
}
