/**
 * A virtio-gpu driver on a front-end {@link Device}: controlq and cursorq requests, guest-RAM
 * backing for 2D resources, and access to host blobs through the device's VIRTIO Shared Memory
 * Region (shmid 1) once the back-end mapped them.
 */
import type { Device, DeviceInfo, Guest } from "@vhostkit/frontend";
import { Cmd, decodeDisplayInfo, GpuFeature, decodeMapInfo, encode, Resp, respHdr, respName, type DisplayMode, type GpuRect } from "./protocol.js";

/** A guest-physical address (branded bigint of @vhostkit/regions). */
export type GuestAddress = ReturnType<Guest["allocator"]["alloc"]>;
/** One VIRTIO Shared Memory Region as placed in guest-physical space. */
export type ShmemRegionInfo = DeviceInfo["shmem"][number];

/** virtio-gpu feature bits the driver asks for: RESOURCE_BLOB (3) and BLOB_ALIGNMENT (5). */
export const GPU_DRIVER_FEATURES = GpuFeature.RESOURCE_BLOB | GpuFeature.BLOB_ALIGNMENT;

/** A command the device answered with an error (or an unexpected response type). */
export class GpuResponseError extends Error {
  /** Response type received. */
  readonly resp: number;
  constructor(what: string, resp: number) {
    super(`${what}: device answered ${respName(resp)}`);
    this.resp = resp;
  }
}

/** One request/response, kept for the summary. */
export interface GpuExchange {
  readonly cmd: string;
  readonly resp: string;
}

/** A virtio-gpu driver on queues 0 (controlq) and 1 (cursorq). */
export class GpuDriver {
  readonly guest: Guest;
  readonly device: Device;
  /** Every command sent, in order. */
  readonly log: GpuExchange[] = [];

  private constructor(guest: Guest, device: Device) {
    this.guest = guest;
    this.device = device;
  }

  /** Starts both queues with RESOURCE_BLOB and BLOB_ALIGNMENT. @throws FrontendError from `Device.start`. */
  static async attach(guest: Guest, device: Device): Promise<GpuDriver> {
    await device.start({ features: GPU_DRIVER_FEATURES, queues: [0, 1], queueSize: 64 });
    return new GpuDriver(guest, device);
  }

  /** The host-visible region (shmid 1), or `undefined` when the back-end has none. */
  get hostVisible(): ShmemRegionInfo | undefined {
    return this.device.info.shmem.find((r) => r.shmid === 1);
  }

  /** Sends `req` on queue `queue` with a `respLen`-byte response buffer; returns the response bytes. */
  async raw(req: Uint8Array, respLen = 64, queue = 0): Promise<Uint8Array> {
    const r = await this.device.queue(queue).transfer([req], [respLen]);
    return (r.buffers[0] as Uint8Array).subarray(0, Math.min(r.len, respLen));
  }

  /** Sends a command and checks the response type. @throws GpuResponseError. */
  async command(req: Uint8Array, want: number = Resp.OK_NODATA, respLen = 64, queue = 0): Promise<Uint8Array> {
    const out = await this.raw(req, respLen, queue);
    const type = respHdr(out).type;
    const cmd = cmdName(respHdr(req).type);
    this.log.push({ cmd, resp: respName(type) });
    if (type !== want) throw new GpuResponseError(cmd.toLowerCase(), type);
    return out;
  }

  /** GET_DISPLAY_INFO: the enabled modes. */
  async displayInfo(): Promise<DisplayMode[]> {
    return decodeDisplayInfo(await this.command(encode.getDisplayInfo(), Resp.OK_DISPLAY_INFO, 408));
  }

  /**
   * A 2D resource whose backing is one guest-RAM buffer holding `pixels` (width × height × 4
   * bytes): RESOURCE_CREATE_2D, RESOURCE_ATTACH_BACKING, TRANSFER_TO_HOST_2D of the whole rect.
   * @returns the guest-physical address of the backing.
   */
  async create2d(id: number, format: number, width: number, height: number, pixels: Uint8Array): Promise<GuestAddress> {
    await this.command(encode.create2d(id, format, width, height));
    const addr = this.guest.allocator.alloc(pixels.byteLength, 4096);
    await this.guest.space.write(addr, pixels);
    await this.command(encode.attachBacking(id, [{ addr, len: pixels.byteLength }]));
    await this.command(encode.transfer(id, { x: 0, y: 0, width, height }, 0n));
    return addr;
  }

  /** Rewrites the backing at `addr` and transfers `rect` (offset as the Linux driver computes it). */
  async update2d(id: number, addr: GuestAddress, width: number, pixels: Uint8Array, rect: GpuRect): Promise<void> {
    await this.guest.space.write(addr, pixels);
    await this.command(encode.transfer(id, rect, BigInt(rect.y * width * 4 + rect.x * 4)));
  }

  /** RESOURCE_CREATE_BLOB (host memory, mappable) then RESOURCE_MAP_BLOB at `offset` of shmid 1. @returns map_info. */
  async createMappedBlob(id: number, size: bigint, offset: bigint): Promise<number> {
    await this.command(encode.createBlob(id, size));
    return decodeMapInfo(await this.command(encode.mapBlob(id, offset), Resp.OK_MAP_INFO, 32));
  }

  /** Guest-physical address of `offset` inside shmid 1. @throws Error without the region. */
  regionAddress(offset: bigint): GuestAddress {
    const r = this.hostVisible;
    if (r === undefined) throw new Error("the back-end has no shmid 1 (host-visible memory)");
    return (r.guestPhysAddr + offset) as GuestAddress;
  }

  /** Writes `data` into shmid 1 at `offset` — straight into the mapped blob's pages. */
  writeRegion(offset: bigint, data: Uint8Array): Promise<void> {
    return this.guest.space.write(this.regionAddress(offset), data);
  }

  /** Reads `len` bytes of shmid 1 at `offset`. */
  async readRegion(offset: bigint, len: number): Promise<Uint8Array> {
    const out = new Uint8Array(len);
    await this.guest.space.read(this.regionAddress(offset), out);
    return out;
  }
}

/** Name of a command type. */
export function cmdName(type: number): string {
  for (const [k, v] of Object.entries(Cmd)) if (v === type) return k;
  return `0x${type.toString(16)}`;
}
