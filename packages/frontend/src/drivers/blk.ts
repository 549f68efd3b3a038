/**
 * virtio-blk driver (docs/devices.md#virtio-blk; VIRTIO 1.x device id 2).
 * @module
 */
import { VirtioFeature } from "@vhostkit/wire";
import { FrontendError } from "../errors.js";
import type { Device } from "../device.js";
import type { DriverQueue } from "../driver-queue.js";
import { SLOT_DATA_BYTES, SlotPool, type SlotDone } from "./blk-slots.js";

/** virtio-blk feature bits (device-specific, bit masks). */
export const BlkFeature = {
  SIZE_MAX: 1n << 1n,
  SEG_MAX: 1n << 2n,
  GEOMETRY: 1n << 4n,
  RO: 1n << 5n,
  BLK_SIZE: 1n << 6n,
  FLUSH: 1n << 9n,
  TOPOLOGY: 1n << 10n,
  CONFIG_WCE: 1n << 11n,
  MQ: 1n << 12n,
  DISCARD: 1n << 13n,
  WRITE_ZEROES: 1n << 14n,
  LIFETIME: 1n << 15n,
  SECURE_ERASE: 1n << 16n,
  ZONED: 1n << 17n,
} as const;

/** virtio-blk request types. */
export const BlkRequestType = { IN: 0, OUT: 1, FLUSH: 4, GET_ID: 8 } as const;

/** virtio-blk status byte values. */
export const BlkStatus = { OK: 0, IOERR: 1, UNSUPP: 2 } as const;

/** Sector size of virtio-blk request addressing, bytes (independent of `blk_size`). */
export const SECTOR_SIZE = 512;

/** Features the driver asks for (intersected with the offer). */
const WANTED =
  VirtioFeature.EVENT_IDX |
  BlkFeature.SIZE_MAX |
  BlkFeature.SEG_MAX |
  BlkFeature.GEOMETRY |
  BlkFeature.RO |
  BlkFeature.BLK_SIZE |
  BlkFeature.FLUSH |
  BlkFeature.TOPOLOGY;

/** Decoded virtio-blk config space (fields beyond the bytes read are `undefined`). Little-endian. */
export interface BlkConfig {
  /** Capacity in 512-byte sectors. */
  readonly capacity: bigint;
  /** Largest segment in bytes (SIZE_MAX). */
  readonly sizeMax?: number;
  /** Most segments per request (SEG_MAX). */
  readonly segMax?: number;
  /** Geometry (GEOMETRY). */
  readonly geometry?: { readonly cylinders: number; readonly heads: number; readonly sectors: number };
  /** Logical block size in bytes (BLK_SIZE). */
  readonly blkSize?: number;
  /** Topology (TOPOLOGY). */
  readonly topology?: { readonly physicalBlockExp: number; readonly alignmentOffset: number; readonly minIoSize: number; readonly optIoSize: number };
  /** Write-back cache enabled (CONFIG_WCE). */
  readonly writeback?: number;
  /** Number of queues (MQ). */
  readonly numQueues?: number;
  /** Discard limits (DISCARD). */
  readonly discard?: { readonly maxSectors: number; readonly maxSeg: number; readonly sectorAlignment: number };
  /** Write-zeroes limits (WRITE_ZEROES). */
  readonly writeZeroes?: { readonly maxSectors: number; readonly maxSeg: number; readonly mayUnmap: number };
}

/**
 * Decodes the virtio-blk config space (docs/devices.md#block-configuration-space).
 * @throws FrontendError `PROTOCOL` when fewer than 8 bytes (no capacity) are given.
 */
export function decodeBlkConfig(bytes: Uint8Array): BlkConfig {
  if (bytes.byteLength < 8)
    throw new FrontendError("PROTOCOL", `virtio-blk config of ${bytes.byteLength} bytes has no capacity`, {
      request: "GET_CONFIG",
      expected: 8,
      actual: bytes.byteLength,
    });
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = bytes.byteLength;
  const u32 = (o: number): number | undefined => (o + 4 <= n ? v.getUint32(o, true) : undefined);
  const out: { -readonly [K in keyof BlkConfig]: BlkConfig[K] } = { capacity: v.getBigUint64(0, true) };
  const sizeMax = u32(8);
  const segMax = u32(12);
  if (sizeMax !== undefined) out.sizeMax = sizeMax;
  if (segMax !== undefined) out.segMax = segMax;
  if (n >= 20) out.geometry = { cylinders: v.getUint16(16, true), heads: v.getUint8(18), sectors: v.getUint8(19) };
  const blkSize = u32(20);
  if (blkSize !== undefined) out.blkSize = blkSize;
  if (n >= 32)
    out.topology = { physicalBlockExp: v.getUint8(24), alignmentOffset: v.getUint8(25), minIoSize: v.getUint16(26, true), optIoSize: v.getUint32(28, true) };
  if (n >= 33) out.writeback = v.getUint8(32);
  if (n >= 36) out.numQueues = v.getUint16(34, true);
  if (n >= 48) out.discard = { maxSectors: v.getUint32(36, true), maxSeg: v.getUint32(40, true), sectorAlignment: v.getUint32(44, true) };
  if (n >= 57) out.writeZeroes = { maxSectors: v.getUint32(48, true), maxSeg: v.getUint32(52, true), mayUnmap: v.getUint8(56) };
  return out;
}

// One encoder for request headers: each request gets a copy (`slice`). A fresh array per request
// plus a DataView over its `.buffer` costs a few microseconds under Bun (JSC moves the array's
// storage out of line on the first `.buffer` access).
const HEADER_VIEW = new DataView(new ArrayBuffer(16));
const HEADER_BYTES = new Uint8Array(HEADER_VIEW.buffer);

/** The request header's sector is a u64: refuse what would wrap instead of reading sector 0. */
function checkSector(sector: bigint, count: number): void {
  if (sector < 0n || sector + BigInt(count) > 1n << 64n)
    throw new FrontendError("BAD_ARGUMENT", `sectors ${sector}+${count} do not fit the u64 sector field`, { actual: sector });
}

function header(type: number, sector: bigint): Uint8Array {
  HEADER_VIEW.setUint32(0, type, true);
  HEADER_VIEW.setUint32(4, 0, true);
  HEADER_VIEW.setBigUint64(8, sector, true);
  return HEADER_BYTES.slice();
}

const EMPTY = new Uint8Array(0);

/** The error a request's status byte means (undefined for OK); 0xff: the device never wrote it. */
function statusError(op: string, status: number | undefined, extra: string): FrontendError | undefined {
  if (status === BlkStatus.OK) return undefined;
  if (status === BlkStatus.UNSUPP) return new FrontendError("UNSUPPORTED", `blk ${op}${extra}: device status UNSUPP`, { request: op, actual: status });
  if (status === BlkStatus.IOERR) return new FrontendError("IO_ERROR", `blk ${op}${extra}: device status IOERR`, { request: op, actual: status });
  return new FrontendError("PROTOCOL", `blk ${op}${extra}: device status 0x${(status ?? 0xff).toString(16)}`, { request: op, actual: status ?? -1 });
}

/**
 * A virtio-blk driver on queue 0 of a {@link Device}. Requests are a 16-byte header, the data,
 * and a 1-byte status written last by the device; large reads and writes are split into requests
 * of at most `maxRequestBytes`.
 */
export class BlkDriver {
  /** The device. */
  readonly device: Device;
  /** The request queue. */
  readonly queue: DriverQueue;
  /** Decoded config space (refreshed on config-change messages). */
  config: BlkConfig | undefined;
  readonly #maxBytes: number;
  readonly #slots: SlotPool;

  private constructor(device: Device, queue: DriverQueue, maxBytes: number) {
    this.device = device;
    this.queue = queue;
    this.#maxBytes = maxBytes;
    this.#slots = new SlotPool(queue);
    this.config = device.info.config === undefined ? undefined : decodeBlkConfig(device.info.config);
    device.onConfigChange((c) => {
      this.config = c === undefined ? undefined : decodeBlkConfig(c);
    });
  }

  /**
   * Starts queue 0 with the virtio-blk features this driver understands.
   * @param options.maxRequestBytes - largest data transfer per request (default 256 KiB, a sector multiple).
   * @throws FrontendError from {@link Device.start}.
   */
  static async attach(device: Device, options: { readonly maxRequestBytes?: number; readonly queueSize?: number } = {}): Promise<BlkDriver> {
    const [q] = await device.start({ features: WANTED, queues: [0], ...(options.queueSize === undefined ? {} : { queueSize: options.queueSize }) });
    const max = options.maxRequestBytes ?? 256 * 1024;
    if (max < SECTOR_SIZE || max % SECTOR_SIZE !== 0)
      throw new FrontendError("BAD_ARGUMENT", `max request size ${max} is not a positive multiple of 512`, { actual: max });
    return new BlkDriver(device, q as DriverQueue, max);
  }

  /** True when VIRTIO_BLK_F_RO was negotiated. */
  get readOnly(): boolean {
    return ((this.device.ackedFeatures ?? 0n) & BlkFeature.RO) !== 0n;
  }

  #status(op: string, status: number | undefined, extra: string): void {
    const err = statusError(op, status, extra);
    if (err !== undefined) throw err;
  }

  /**
   * One request of at most {@link SLOT_DATA_BYTES} through a pooled guest buffer; resolves with a
   * copy of the data part (reads) or an empty array. Undefined when no slot is free (or the request
   * is larger): the caller takes the general path.
   */
  #pooled(op: string, type: number, sector: bigint, dataLen: number, dataOut: Uint8Array | undefined): Promise<Uint8Array> | undefined {
    let settle: ((err: FrontendError | undefined, status: number, data: Uint8Array) => void) | undefined;
    const p = new Promise<Uint8Array>((resolve, reject) => {
      settle = (err, status, data) => {
        const e = err ?? (status === BlkStatus.OK ? undefined : statusError(op, status, type === BlkRequestType.FLUSH ? "" : ` sector ${sector}`));
        if (e !== undefined) reject(e);
        else resolve(dataOut === undefined && dataLen > 0 ? data.slice() : EMPTY);
      };
    });
    // Filled like the general path's buffers: data a device reports but never writes reads 0xff, not an earlier request's.
    return this.#slots.post(type, sector, dataLen, dataOut, settle as SlotDone, true) ? p : undefined;
  }

  /**
   * Reads `count` sectors from `sector` without a promise: `done(error, data)` is called once, from
   * the completion round (at once for a request refused up front), with `data` a view of the
   * request's guest buffer that is valid during the call only (copy what you keep). Requests of up
   * to 16 KiB reuse guest buffers pinned for the queue's life and are not cleared before the
   * device writes them; larger ones go through {@link BlkDriver.read}. Submitting several from one
   * callback publishes them together when the callback runs in a completion round. An exception
   * `done` throws is reported as uncaught afterwards; the round goes on.
   */
  readWith(sector: bigint, count: number, done: (err: FrontendError | undefined, data: Uint8Array | undefined) => void): void {
    if (!Number.isInteger(count) || count < 1) {
      done(new FrontendError("BAD_ARGUMENT", `read of ${count} sectors`, { actual: count }), undefined);
      return;
    }
    try {
      checkSector(sector, count);
    } catch (err) {
      done(err as FrontendError, undefined);
      return;
    }
    const ok = this.#slots.post(BlkRequestType.IN, sector, count * SECTOR_SIZE, undefined, (err, status, data) => {
      const e = err ?? (status === BlkStatus.OK ? undefined : statusError("read", status, ` sector ${sector}`));
      done(e, e === undefined ? data : undefined);
    });
    if (!ok)
      this.read(sector, count).then(
        (data) => done(undefined, data),
        (err: unknown) => done(err as FrontendError, undefined),
      );
  }

  /**
   * Reads `count` sectors (512 bytes each) from `sector`.
   * @throws FrontendError `IO_ERROR` (e.g. past the end), `BAD_ARGUMENT`, `DEVICE_FAILED`, `TIMEOUT`.
   */
  async read(sector: bigint, count: number): Promise<Uint8Array> {
    if (!Number.isInteger(count) || count < 1) throw new FrontendError("BAD_ARGUMENT", `read of ${count} sectors`, { actual: count });
    checkSector(sector, count);
    if (count * SECTOR_SIZE <= Math.min(this.#maxBytes, SLOT_DATA_BYTES)) {
      const p = this.#pooled("read", BlkRequestType.IN, sector, count * SECTOR_SIZE, undefined);
      if (p !== undefined) return p;
    }
    const per = this.#maxBytes / SECTOR_SIZE;
    let out: Uint8Array | undefined;
    for (let done = 0; done < count; done += per) {
      const n = Math.min(per, count - done);
      const s = sector + BigInt(done);
      const r = await this.queue.transfer([header(BlkRequestType.IN, s)], [n * SECTOR_SIZE, 1]);
      this.#status("read", r.buffers[1]?.[0], ` sector ${s}`);
      const data = r.buffers[0] as Uint8Array;
      if (n === count) return data; // one request: its buffer is already a private copy
      (out ??= new Uint8Array(count * SECTOR_SIZE)).set(data, done * SECTOR_SIZE);
    }
    return out as Uint8Array;
  }

  /**
   * Writes `data` (a multiple of 512 bytes) at `sector`.
   * @throws FrontendError `BAD_ARGUMENT`, `IO_ERROR`, `UNSUPPORTED` (read-only device), `DEVICE_FAILED`, `TIMEOUT`.
   */
  async write(sector: bigint, data: Uint8Array): Promise<void> {
    if (data.byteLength === 0 || data.byteLength % SECTOR_SIZE !== 0)
      throw new FrontendError("BAD_ARGUMENT", `write of ${data.byteLength} bytes is not a positive multiple of 512`, { actual: data.byteLength });
    checkSector(sector, data.byteLength / SECTOR_SIZE);
    if (data.byteLength <= Math.min(this.#maxBytes, SLOT_DATA_BYTES)) {
      const p = this.#pooled("write", BlkRequestType.OUT, sector, data.byteLength, data);
      if (p !== undefined) {
        await p;
        return;
      }
    }
    for (let off = 0; off < data.byteLength; off += this.#maxBytes) {
      const chunk = data.subarray(off, Math.min(off + this.#maxBytes, data.byteLength));
      const s = sector + BigInt(off / SECTOR_SIZE);
      const r = await this.queue.transfer([header(BlkRequestType.OUT, s), chunk], [1]);
      this.#status("write", r.buffers[0]?.[0], ` sector ${s}`);
    }
  }

  /**
   * FLUSH (needs VIRTIO_BLK_F_FLUSH).
   * @throws FrontendError `UNSUPPORTED` (not negotiated or UNSUPP), `IO_ERROR`.
   */
  async flush(): Promise<void> {
    if (((this.device.ackedFeatures ?? 0n) & BlkFeature.FLUSH) === 0n)
      throw new FrontendError("UNSUPPORTED", "blk flush: VIRTIO_BLK_F_FLUSH not negotiated", { request: "flush" });
    const p = this.#pooled("flush", BlkRequestType.FLUSH, 0n, 0, undefined);
    if (p !== undefined) {
      await p;
      return;
    }
    const r = await this.queue.transfer([header(BlkRequestType.FLUSH, 0n)], [1]);
    this.#status("flush", r.buffers[0]?.[0], "");
  }

  /**
   * GET_ID: the device serial (up to 20 bytes, NUL-padded).
   * @throws FrontendError `UNSUPPORTED`, `IO_ERROR`.
   */
  async getId(): Promise<string> {
    const r = await this.queue.transfer([header(BlkRequestType.GET_ID, 0n)], [20, 1]);
    this.#status("get-id", r.buffers[1]?.[0], "");
    const id = r.buffers[0] as Uint8Array;
    const end = id.indexOf(0);
    return new TextDecoder().decode(id.subarray(0, end < 0 ? id.length : end));
  }
}
