/**
 * The real thing over sockets: vhostkit-gpu in its own process (bin/vhostkit-gpu.mjs run with
 * process.execPath: Bun runs the sources, Node the dist build) driven by the GPU driver of
 * `vhost-user-device gpu` on @vhostkit/frontend. Blob bytes round-trip through the shared memory
 * region, the back-end sees the same bytes, and its PNG decodes to the scene the driver drew.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { decode } from "fast-png";
import { Guest } from "@vhostkit/frontend";
import { GpuDriver } from "../../device/src/gpu/driver.js";
import { encode, Resp, respHdr } from "../../device/src/gpu/protocol.js";
import { bgrxToRgba, drawScene } from "../../device/src/gpu/scene.js";
import { runGpuSession } from "../../device/src/gpu/session.js";
import { APP, GpuProcess, ensureBuilt } from "./helpers/gpu-process.js";

test("GPU driver ↔ vhostkit-gpu over sockets: blob bytes round-trip through shmid 1, the back-end sees them, the PNG shows the scene", {
  timeout: 60_000,
}, async () => {
  ensureBuilt();
  const be = new GpuProcess();
  const guest = new Guest();
  try {
    const ready = await be.listening();
    assert.deepEqual([ready["shmid"], ready["shmSize"]], [1, "0x4000000"]);
    const device = await guest.addDevice({ socketPath: be.socket });
    assert.deepEqual(
      device.info.shmem.map((r) => [r.shmid, r.size]),
      [[1, 64n << 20n]],
      "GET_SHMEM_CONFIG reports shmid 1 of 64 MiB",
    );
    const driverPng = join(be.dir, "driver.png");
    // biome-ignore lint/suspicious/noExplicitAny: the session summary, compared field by field
    const s = (await runGpuSession(guest, device, { screenshot: driverPng })) as Record<string, any>;
    await device.close();
    assert.equal(s["errors"], 0);
    assert.deepEqual(s["display"], { width: 640, height: 480 });
    assert.equal(s["blob"].roundTrip.ok, true, "bytes written through the region read back the same");
    assert.equal(s["blob"].sceneReadBack, true);
    assert.deepEqual(s["mappings"].whileMapped, [{ shmid: 1, shmOffset: "0x100000", len: "0x12c000", guestPhysAddr: s["blob"].guestPhysAddr, writable: true }]);
    assert.deepEqual(s["mappings"].afterUnmap, []);
    // The back-end hashed its own view of the blob when the driver unmapped it: the same pages.
    const unmap = await be.event((e) => e["cmd"] === "RESOURCE_UNMAP_BLOB");
    assert.equal(unmap["resp"], "OK_NODATA");
    assert.equal(unmap["blobSha256"], s["blob"].sha256);
    assert.ok(!be.events.some((e) => e["event"] === "command" && String(e["resp"]).startsWith("ERR")), "no command refused");
    // The back-end's PNG of the blob-backed scanout decodes to the scene the driver drew.
    const shot = await be.event((e) => e["event"] === "screenshot" && e["resourceId"] === 2);
    const png = decode(readFileSync(String(shot["file"])));
    assert.deepEqual([png.width, png.height, png.channels, png.depth], [640, 480, 4, 8]);
    const want = bgrxToRgba(drawScene(640, 480), 640, 480);
    assert.ok(Buffer.from(png.data as Uint8Array).equals(Buffer.from(want)), "back-end screenshot pixels = the scene");
    const mine = decode(readFileSync(driverPng));
    assert.ok(Buffer.from(mine.data as Uint8Array).equals(Buffer.from(want)), "driver screenshot pixels = the scene");
  } finally {
    await guest.close().finally(() => be.stop());
  }
});

test("a bad driver over sockets gets error responses and the device keeps serving; a 1 MiB region refuses a map past its end", {
  timeout: 60_000,
}, async () => {
  ensureBuilt();
  const be = new GpuProcess(["--shm-size", "1M", "--width", "64", "--height", "32"]);
  const guest = new Guest();
  try {
    await be.listening();
    const device = await guest.addDevice({ socketPath: be.socket });
    assert.deepEqual(
      device.info.shmem.map((r) => r.size),
      [1n << 20n],
    );
    const gpu = await GpuDriver.attach(guest, device);
    const resp = async (req: Uint8Array, len = 64) => respHdr(await gpu.raw(req, len)).type;
    assert.equal(await resp(encode.createBlob(1, 0x2000n)), Resp.OK_NODATA);
    assert.equal(await resp(encode.mapBlob(1, 0xff000n)), Resp.ERR_INVALID_PARAMETER, "past the end of the 1 MiB region");
    assert.equal(await resp(encode.mapBlob(1, 0x1800n)), Resp.ERR_INVALID_PARAMETER, "unaligned");
    assert.equal(await resp(encode.createBlob(2, 2n << 20n)), Resp.ERR_OUT_OF_MEMORY, "larger than the region");
    assert.equal(await resp(encode.unref(9)), Resp.ERR_INVALID_RESOURCE_ID);
    assert.equal(await resp(new Uint8Array(7)), Resp.ERR_UNSPEC);
    assert.equal(await resp(encode.mapBlob(1, 0xfe000n), 32), Resp.OK_MAP_INFO, "the last two pages");
    assert.deepEqual(
      device.sharedMemory?.mappings().map((m) => [m.shmOffset, m.len]),
      [[0xfe000n, 0x2000n]],
    );
    await gpu.writeRegion(0xfe000n, new Uint8Array([1, 2, 3]));
    assert.deepEqual([...(await gpu.readRegion(0xfe000n, 3))], [1, 2, 3]);
    assert.equal(await resp(encode.unmapBlob(1)), Resp.OK_NODATA);
    assert.deepEqual(device.sharedMemory?.mappings(), []);
    assert.deepEqual((await gpu.displayInfo())[0]?.rect, { x: 0, y: 0, width: 64, height: 32 });
    await device.close();
  } finally {
    await guest.close().finally(() => be.stop());
  }
});

for (const dialect of ["rust-vmm-0.16", "draft", "crosvm-legacy"] as const) {
  test(`--dialect ${dialect}: the same session, blob mapped and read back through shmid 1`, { timeout: 60_000 }, async () => {
    ensureBuilt();
    const be = new GpuProcess(["--dialect", dialect, "--width", "32", "--height", "16"]);
    const guest = new Guest();
    try {
      assert.equal((await be.listening())["dialect"], dialect);
      const device = await guest.addDevice({ socketPath: be.socket, dialect });
      // biome-ignore lint/suspicious/noExplicitAny: the session summary, compared field by field
      const s = (await runGpuSession(guest, device, { mapOffset: 0x2000n })) as Record<string, any>;
      await device.close();
      assert.deepEqual(
        s["shmem"].map((r: { shmid: number }) => r.shmid),
        [1],
      );
      assert.equal(s["blob"].roundTrip.ok, true);
      assert.equal(s["mappings"].whileMapped.length, 1);
      assert.equal((await be.event((e) => e["cmd"] === "RESOURCE_UNMAP_BLOB"))["blobSha256"], s["blob"].sha256);
    } finally {
      await guest.close().finally(() => be.stop());
    }
  });
}

test("vhost-user-device probe --device-type gpu names the GPU feature bits and decodes its config", { timeout: 60_000 }, async () => {
  const be = new GpuProcess();
  try {
    await be.listening();
    // The vhost-user-device CLI is a Bun program: under Node it runs with the repository's own Bun.
    const bun = "bun" in process.versions ? process.execPath : join(APP, "..", "..", "node_modules", ".bin", "bun");
    const r = spawnSync(bun, [join(APP, "..", "device", "src", "main.ts"), "probe", "--socket", be.socket, "--device-type", "gpu"], {
      encoding: "utf8",
      timeout: 60_000,
    });
    assert.equal(r.status, 0, r.stderr);
    for (const bit of ["0\\s+VIRGL", "3\\s+RESOURCE_BLOB", "4\\s+CONTEXT_INIT", "5\\s+BLOB_ALIGNMENT"]) assert.match(r.stdout, new RegExp(`\\b${bit}\\b`));
    assert.match(r.stdout, /virtio-gpu config/);
    assert.match(r.stdout, /num_scanouts\s+1\b/);
    assert.match(r.stdout, /num_capsets\s+1\b/, "the vhostkit capset");
    assert.match(r.stdout, /blob_alignment\s+4096\b/);
  } finally {
    await be.stop();
  }
});
