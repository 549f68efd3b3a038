/**
 * Packed rings (VIRTIO_F_RING_PACKED, docs/virtqueue.md#packed-rings) between the front-end and
 * the RAM blk example of @vhostkit/backend in its own process: used whenever the back-end offers
 * them, unless `packedRing: false`; required with `packedRing: true`. A queue size that is not a
 * power of two, many laps of the ring, data verified, GET_VRING_BASE matching the driver's
 * positions and the conformance checks on both layouts.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { FRESH_PACKED_VRING_BASE } from "@vhostkit/virtqueue";
import { VirtioFeature } from "@vhostkit/wire";
import { BlkDriver, Guest, isFrontendError, runConformance } from "../src/index.js";
import { startRamBlk } from "./helpers/ram-blk-process.js";

test("packed by default: a queue of 100 serves 240 writes and reads of 1–8 sectors, 24 at a time, across many laps; the data reads back; GET_VRING_BASE = the driver's positions", {
  timeout: 60_000,
}, async () => {
  const blk = await startRamBlk(["--size-mib", "2"]);
  const guest = new Guest();
  try {
    const device = await guest.addDevice({ socketPath: blk.socket });
    assert.notEqual(device.info.features & VirtioFeature.RING_PACKED, 0n, "the framework offers RING_PACKED");
    const driver = await BlkDriver.attach(device, { queueSize: 100 });
    assert.notEqual((device.ackedFeatures ?? 0n) & VirtioFeature.RING_PACKED, 0n, "acknowledged");
    assert.equal(driver.queue.packed, true);
    assert.equal(driver.queue.initialVringBase, FRESH_PACKED_VRING_BASE);
    const written = new Map<bigint, Uint8Array>();
    for (let round = 0; round < 10; round++) {
      const batch = Array.from({ length: 24 }, (_, i) => {
        const sector = BigInt((round * 24 + i) * 8);
        const data = randomBytes(512 * (1 + ((round + i) % 8)));
        written.set(sector, data);
        return driver.write(sector, data);
      });
      await Promise.all(batch);
    }
    const sectors = [...written.keys()];
    for (let i = 0; i < sectors.length; i += 24) {
      const reads = await Promise.all(sectors.slice(i, i + 24).map((s) => driver.read(s, written.get(s)!.byteLength / 512)));
      reads.forEach((got, j) => assert.deepEqual(got, new Uint8Array(written.get(sectors[i + j]!)!)));
    }
    const expected = driver.queue.vringBase;
    assert.ok(expected !== FRESH_PACKED_VRING_BASE && (expected & 0xffff) === expected >>> 16, `settled base 0x${expected.toString(16)}`);
    const bases = await device.stop();
    assert.equal(bases.get(0), expected);
  } finally {
    await guest.close();
    await blk.stop();
  }
});

test("packedRing: false keeps split rings with a back-end that offers packed ones; packedRing: true fails start with NEGOTIATION when the back-end does not", {
  timeout: 60_000,
}, async () => {
  const packedBlk = await startRamBlk(["--size-mib", "1"]);
  const splitBlk = await startRamBlk(["--size-mib", "1", "--no-packed"]);
  const guest = new Guest();
  try {
    const split = await guest.addDevice({ socketPath: packedBlk.socket, packedRing: false });
    const d = await BlkDriver.attach(split);
    assert.equal((split.ackedFeatures ?? 0n) & VirtioFeature.RING_PACKED, 0n);
    assert.equal(d.queue.packed, false);
    assert.equal(await d.getId(), "vhostkit-ram-blk");
    const required = await guest.addDevice({ socketPath: splitBlk.socket, packedRing: true });
    assert.equal(required.info.features & VirtioFeature.RING_PACKED, 0n, "--no-packed: not offered");
    await assert.rejects(BlkDriver.attach(required), (e: unknown) => isFrontendError(e) && e.code === "NEGOTIATION" && /packed ring required/.test(e.message));
    await required.close(); // the back-end serves one front-end at a time
    const auto = await guest.addDevice({ socketPath: splitBlk.socket });
    assert.equal((await BlkDriver.attach(auto)).queue.packed, false, "not offered: split");
  } finally {
    await guest.close();
    await packedBlk.stop();
    await splitBlk.stop();
  }
});

test("conformance checks pass on both layouts, GET_VRING_BASE stopping the ring included", { timeout: 60_000 }, async () => {
  const blk = await startRamBlk(["--size-mib", "1"]);
  try {
    for (const packedRing of [true, false]) {
      const results = await runConformance({ socketPath: blk.socket, deviceType: "blk", packedRing });
      const failed = results.filter((r) => r.status === "fail");
      assert.deepEqual(failed, [], JSON.stringify(results));
      const stop = results.find((r) => r.name === "GET_VRING_BASE stops the ring");
      assert.equal(stop?.status, "pass");
      assert.match(stop?.reason ?? "", packedRing ? /packed ring base 0x[0-9a-f]+/ : /next avail index/);
    }
  } finally {
    await blk.stop();
  }
});
