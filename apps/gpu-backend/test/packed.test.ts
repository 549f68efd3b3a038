/**
 * The GPU sample on packed rings (docs/virtqueue.md#packed-rings): vhostkit-gpu in its own process,
 * driven by the GPU driver of `vhost-user-device gpu` with `packedRing: true` (required: the start
 * fails unless the back-end offers VIRTIO_F_RING_PACKED). Both queues (control and cursor) run
 * packed; the whole session — blob created, mapped through shmid 1, written and read back, scanout,
 * unmapped — completes without a refused command, and the queues stop at a settled packed base.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { Guest } from "@vhostkit/frontend";
import { VirtioFeature } from "@vhostkit/wire";
import { runGpuSession } from "../../device/src/gpu/session.js";
import { GpuProcess, ensureBuilt } from "./helpers/gpu-process.js";

test("GPU driver ↔ vhostkit-gpu on packed rings: the session completes, blob bytes round-trip, both queues packed", { timeout: 60_000 }, async () => {
  ensureBuilt();
  const be = new GpuProcess();
  const guest = new Guest();
  try {
    await be.listening();
    const device = await guest.addDevice({ socketPath: be.socket, packedRing: true });
    assert.notEqual(device.info.features & VirtioFeature.RING_PACKED, 0n, "vhostkit-gpu offers RING_PACKED");
    // biome-ignore lint/suspicious/noExplicitAny: the session summary, compared field by field
    const s = (await runGpuSession(guest, device, { screenshot: join(be.dir, "driver.png") })) as Record<string, any>;
    assert.notEqual((device.ackedFeatures ?? 0n) & VirtioFeature.RING_PACKED, 0n, "acknowledged");
    const queues = [device.queue(0), device.queue(1)];
    assert.deepEqual(
      queues.map((q) => q.packed),
      [true, true],
    );
    const expected = queues.map((q) => q.vringBase);
    const bases = await device.stop();
    assert.deepEqual([bases.get(0), bases.get(1)], expected, "GET_VRING_BASE: the driver's avail and used positions");
    for (const b of expected) assert.equal(b & 0xffff, b >>> 16, `settled packed base 0x${b.toString(16)}`);
    await device.close();
    assert.equal(s["errors"], 0);
    assert.equal(s["blob"].roundTrip.ok, true, "bytes written through the region read back the same");
    assert.equal(s["blob"].sceneReadBack, true);
    assert.deepEqual(s["mappings"].afterUnmap, []);
    assert.ok(!be.events.some((e) => e["event"] === "command" && String(e["resp"]).startsWith("ERR")), "no command refused");
  } finally {
    await guest.close().finally(() => be.stop());
  }
});
