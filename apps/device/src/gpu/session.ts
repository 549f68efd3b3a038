/**
 * What `vhost-user-device gpu` does, as a library call: display info, a 2D resource backed by guest
 * RAM on scanout 0, a host blob created and mapped into shmid 1, bytes written and read back
 * THROUGH the shared memory region, the demo scene drawn into the blob and shown with
 * SET_SCANOUT_BLOB + RESOURCE_FLUSH, a cursor, then unmap and clean-up. Returns the summary.
 */
import { createHash } from "node:crypto";
import { writeFile } from "node:fs/promises";
import type { Device, Guest } from "@vhostkit/frontend";
import { GpuDriver } from "./driver.js";
import { rgbaPng } from "./png.js";
import { Cmd, encode, FORMAT_BGRX, Resp } from "./protocol.js";
import { bgrxToRgba, drawScene, sky } from "./scene.js";

/** Options of {@link runGpuSession}. */
export interface GpuSessionOptions {
  /** Write a PNG of the blob-backed scanout (read back through the shared memory region) here. */
  readonly screenshot?: string;
  /** Offset of the blob mapping inside shmid 1 (default 0x100000; must be page-aligned). */
  readonly mapOffset?: bigint;
}

const hex = (v: bigint | number): string => `0x${v.toString(16)}`;
const sha256 = (b: Uint8Array): string => createHash("sha256").update(b).digest("hex");

/** Mappings of the device's shared memory as JSON-friendly rows. */
function liveMappings(device: Device): { shmid: number; shmOffset: string; len: string; guestPhysAddr: string; writable: boolean }[] {
  return (device.sharedMemory?.mappings() ?? []).map((m) => ({
    shmid: m.shmid,
    shmOffset: hex(m.shmOffset),
    len: hex(m.len),
    guestPhysAddr: hex(m.guestPhysAddr),
    writable: m.writable,
  }));
}

/**
 * Runs the session on a negotiated (not yet started) device of `guest`.
 * @throws GpuResponseError when the back-end refuses a command; FrontendError on protocol failure.
 */
export async function runGpuSession(guest: Guest, device: Device, options: GpuSessionOptions = {}): Promise<Record<string, unknown>> {
  const info = device.info;
  const gpu = await GpuDriver.attach(guest, device);
  const region = gpu.hostVisible;
  if (region === undefined) throw new Error("the back-end reports no shared memory region with shmid 1 (GET_SHMEM_CONFIG)");
  const [mode] = await gpu.displayInfo();
  if (mode === undefined) throw new Error("GET_DISPLAY_INFO: no enabled scanout");
  const { width, height } = mode.rect;
  const stride = width * 4;
  const frameBytes = stride * height;

  // 1. A 2D resource backed by guest RAM (sky only) on scanout 0.
  const bg = new Uint8Array(frameBytes);
  for (let y = 0; y < height; y++) {
    const [r, g, b] = sky(y, height);
    for (let x = 0; x < width; x++) bg.set([b, g, r, 0xff], y * stride + x * 4);
  }
  const backing = await gpu.create2d(1, FORMAT_BGRX, width, height, bg);
  await gpu.command(encode.setScanout(0, 1, mode.rect));
  await gpu.command(encode.flush(1, mode.rect));

  // 2. A host blob mapped into shmid 1; bytes written and read back through the region.
  const mapOffset = options.mapOffset ?? 0x100000n;
  const blobSize = BigInt(frameBytes);
  const mapInfo = await gpu.createMappedBlob(2, blobSize, mapOffset);
  const mappingsWhileMapped = liveMappings(device);
  const probe = new Uint8Array(4096);
  for (let i = 0; i < probe.length; i++) probe[i] = (i * 31 + 7) & 0xff;
  await gpu.writeRegion(mapOffset, probe);
  const back = await gpu.readRegion(mapOffset, probe.length);
  const roundTrip = back.every((b, i) => b === probe[i]);
  if (!roundTrip) throw new Error("blob bytes read back through the shared memory region differ from those written");

  // 3. The scene drawn into the blob, shown as a blob-backed scanout.
  const scene = drawScene(width, height, stride);
  await gpu.writeRegion(mapOffset, scene);
  await gpu.command(encode.setScanoutBlob(0, 2, { rect: mode.rect, width, height, format: FORMAT_BGRX, stride, offset: 0 }));
  await gpu.command(encode.flush(2, mode.rect));
  const shown = await gpu.readRegion(mapOffset, frameBytes);
  const blobSha256 = sha256(shown);
  const sceneOk = shown.every((b, i) => b === scene[i]);
  let screenshot: string | null = null;
  if (options.screenshot !== undefined) {
    await writeFile(options.screenshot, rgbaPng(width, height, bgrxToRgba(shown, width, height, stride)));
    screenshot = options.screenshot;
  }

  // 4. A cursor on cursorq (a 64×64 resource).
  const cursorPixels = new Uint8Array(64 * 64 * 4).fill(0xff);
  await gpu.create2d(3, FORMAT_BGRX, 64, 64, cursorPixels);
  await gpu.command(encode.cursor(Cmd.UPDATE_CURSOR, { scanoutId: 0, x: width >> 1, y: height >> 1, id: 3 }), Resp.OK_NODATA, 24, 1);
  await gpu.command(encode.cursor(Cmd.MOVE_CURSOR, { scanoutId: 0, x: (width >> 1) + 8, y: (height >> 1) + 8 }), Resp.OK_NODATA, 24, 1);

  // 5. Unmap; the scanout goes back to the 2D resource; every resource released.
  await gpu.command(encode.unmapBlob(2));
  const mappingsAfterUnmap = liveMappings(device);
  await gpu.command(encode.setScanout(0, 1, mode.rect));
  await gpu.command(encode.flush(1, mode.rect));
  for (const id of [3, 2, 1]) await gpu.command(encode.unref(id));

  return {
    dialect: info.dialect.name,
    features: hex(info.features),
    ackedFeatures: hex(device.ackedFeatures ?? 0n),
    shmem: info.shmem.map((r) => ({ shmid: r.shmid, size: hex(r.size), guestPhysAddr: hex(r.guestPhysAddr) })),
    display: { width, height },
    resource2d: { id: 1, format: "B8G8R8X8_UNORM", width, height, backing: { guestPhysAddr: hex(backing), bytes: frameBytes } },
    blob: {
      id: 2,
      size: hex(blobSize),
      shmid: 1,
      mapOffset: hex(mapOffset),
      mapInfo,
      guestPhysAddr: hex(region.guestPhysAddr + mapOffset),
      roundTrip: { bytes: probe.length, ok: roundTrip },
      sceneReadBack: sceneOk,
      sha256: blobSha256,
    },
    mappings: { whileMapped: mappingsWhileMapped, afterUnmap: mappingsAfterUnmap },
    scanout: { id: 0, resourceId: 2, blob: true, width, height, stride },
    cursor: { resourceId: 3, x: (width >> 1) + 8, y: (height >> 1) + 8 },
    screenshot,
    commands: gpu.log.length,
    errors: gpu.log.filter((e) => !e.resp.startsWith("OK_")).length,
  };
}
