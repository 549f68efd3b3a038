/**
 * Device state transfer of vhostkit-gpu (DEVICE_STATE, docs/protocol.md#device-state-transfer): the
 * vhostkit front-end's GPU driver sets up a blob-backed scanout with an image and a 2D resource on
 * one vhostkit-gpu process, saves its state (saveDeviceState), loads it into a fresh process
 * (loadDeviceState) driven by a fresh guest, and starts the rings there: the fresh process maps the
 * blob again at its offset (SHMEM_MAP), its scanout shows the same pixels, and it knows the
 * resources it was given. A state it cannot accept is refused and leaves it serving.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decode } from "fast-png";
import { Guest, isFrontendError, loadDeviceState, saveDeviceState } from "@vhostkit/frontend";
import { GpuDriver, GpuResponseError } from "../../device/src/gpu/driver.js";
import { encode, FORMAT_BGRX } from "../../device/src/gpu/protocol.js";
import { drawScene } from "../../device/src/gpu/scene.js";
import { GpuProcess, ensureBuilt, type GpuEvent } from "./helpers/gpu-process.js";

const W = 64;
const H = 32;
const RECT = { x: 0, y: 0, width: W, height: H };
const MAP_OFFSET = 0x10000n;

/** vhostkit-gpu `name` in `dir`: a 64 × 32 display, a 4 MiB region, listening. */
async function start(dir: string, name: string, started: GpuProcess[]): Promise<GpuProcess> {
  const p = new GpuProcess(["--shm-size", "4M", "--width", String(W), "--height", String(H)], name, dir);
  started.push(p);
  await p.listening();
  return p;
}

/** The RGBA pixels of the screenshot an event names. */
function shotPixels(e: GpuEvent): Uint8Array {
  const png = decode(readFileSync(String(e["file"])));
  assert.deepEqual([png.width, png.height], [W, H]);
  return png.data as Uint8Array;
}

/** BGRX `src` as RGBA (X read as opaque). */
function rgba(src: Uint8Array): Uint8Array {
  const out = new Uint8Array(src.length);
  for (let i = 0; i < src.length; i += 4) out.set([src[i + 2] as number, src[i + 1] as number, src[i] as number, 255], i);
  return out;
}

test("vhostkit-gpu state saved from one process and loaded into a fresh one: the same scanout image, the blob mapped again, the resources known", {
  timeout: 90_000,
}, async () => {
  ensureBuilt();
  const dir = mkdtempSync(join(tmpdir(), "vhostkit-gpu-state-"));
  const started: GpuProcess[] = [];
  const source = new Guest();
  const target = new Guest();
  try {
    // Source: a 2D resource (its own pattern) and a mapped blob holding the scene on scanout 0.
    const a = await start(dir, "a", started);
    const devA = await source.addDevice({ socketPath: a.socket });
    const gpuA = await GpuDriver.attach(source, devA);
    const pattern = new Uint8Array(W * H * 4);
    for (let i = 0; i < pattern.length; i += 4) pattern.set([(i * 7) & 0xff, (i >> 4) & 0xff, (i >> 2) & 0xff, 0xff], i);
    await gpuA.create2d(1, FORMAT_BGRX, W, H, pattern);
    await gpuA.createMappedBlob(2, BigInt(W * H * 4), MAP_OFFSET);
    const scene = drawScene(W, H, W * 4);
    await gpuA.writeRegion(MAP_OFFSET, scene);
    await gpuA.command(encode.setScanoutBlob(0, 2, { rect: RECT, width: W, height: H, format: FORMAT_BGRX, stride: W * 4, offset: 0 }));
    await gpuA.command(encode.flush(2, RECT));
    const before = shotPixels(await a.event((e) => e["event"] === "screenshot" && e["resourceId"] === 2));
    assert.deepEqual(before, rgba(scene), "the source shows the scene");

    const state = await saveDeviceState(devA);
    assert.ok(state.byteLength > scene.byteLength + pattern.byteLength, `state of ${state.byteLength} bytes holds both images`);

    // Target: a fresh process and a fresh guest; the state goes in before its rings start.
    const b = await start(dir, "b", started);
    const devB = await target.addDevice({ socketPath: b.socket });
    await loadDeviceState(devB, state);
    const gpuB = await GpuDriver.attach(target, devB);
    const map = await b.event((e) => e["event"] === "shmem-map");
    assert.equal(map["offset"], `0x${MAP_OFFSET.toString(16)}`, "the blob is mapped again where it was");
    await devB.propagationSettled();
    assert.deepEqual(await gpuB.readRegion(MAP_OFFSET, scene.byteLength), scene, "the fresh guest reads the blob through its own region");

    await gpuB.command(encode.flush(2, RECT));
    const after = shotPixels(await b.event((e) => e["event"] === "screenshot" && e["resourceId"] === 2));
    assert.deepEqual(after, before, "the fresh process shows the same image");

    // The 2D resource came along with its pixels; ids and the mapping are taken.
    await gpuB.command(encode.setScanout(0, 1, RECT));
    await gpuB.command(encode.flush(1, RECT));
    assert.deepEqual(shotPixels(await b.event((e) => e["event"] === "screenshot" && e["resourceId"] === 1)), rgba(pattern));
    await assert.rejects(gpuB.command(encode.create2d(1, FORMAT_BGRX, W, H)), (e: unknown) => e instanceof GpuResponseError, "resource 1 exists");
    await assert.rejects(gpuB.command(encode.mapBlob(2, 0x200000n)), (e: unknown) => e instanceof GpuResponseError, "blob 2 is mapped");
    await gpuB.command(encode.unmapBlob(2));
    await b.event((e) => e["event"] === "shmem-unmap");
    assert.ok(
      b.events.some((e) => e["cmd"] === "RESOURCE_UNMAP_BLOB" && e["resp"] === "OK_NODATA"),
      `unmapped: ${b.events.filter((e) => e["event"] === "command").length} commands`,
    );
  } finally {
    await source.close();
    await target.close();
    for (const p of started) await p.stop(true);
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a state vhostkit-gpu cannot accept (garbage, truncated, another scanout count) is refused; the process still serves", { timeout: 90_000 }, async () => {
  ensureBuilt();
  const dir = mkdtempSync(join(tmpdir(), "vhostkit-gpu-state-"));
  const started: GpuProcess[] = [];
  const guest = new Guest();
  try {
    const a = await start(dir, "a", started);
    const devA = await guest.addDevice({ socketPath: a.socket });
    const gpuA = await GpuDriver.attach(guest, devA);
    await gpuA.create2d(5, FORMAT_BGRX, W, H, new Uint8Array(W * H * 4).fill(0x40));
    const good = await saveDeviceState(devA);
    await devA.close();

    const b = await start(dir, "b", started);
    const dev = await guest.addDevice({ socketPath: b.socket });
    const refused = (e: unknown) => isFrontendError(e) && e.code === "REFUSED";
    await assert.rejects(loadDeviceState(dev, new TextEncoder().encode("not a gpu state at all, clearly")), refused);
    await assert.rejects(loadDeviceState(dev, good.subarray(0, good.byteLength - 100)), refused, "truncated");
    const otherCount = good.slice();
    new DataView(otherCount.buffer).setUint32(12, 2, true); // the scanout count field
    await assert.rejects(loadDeviceState(dev, otherCount), refused, "two scanouts");
    const extra = new Uint8Array(good.byteLength + 1);
    extra.set(good);
    await assert.rejects(loadDeviceState(dev, extra), refused, "a byte after the state");
    // Still serving, and nothing of the refused states was installed.
    const gpu = await GpuDriver.attach(guest, dev);
    const [mode] = await gpu.displayInfo();
    assert.equal(mode?.rect.width, W);
    await gpu.command(encode.create2d(5, FORMAT_BGRX, W, H));
    assert.ok(b.running);
    assert.ok(!b.events.some((e) => e["cmd"] === "RESOURCE_CREATE_2D" && e["resp"] !== "OK_NODATA"), "resource 5 was free");
  } finally {
    await guest.close();
    for (const p of started) await p.stop(true);
    rmSync(dir, { recursive: true, force: true });
  }
});
