/**
 * VIRTIO_F_EVENT_IDX negotiated with a real back-end (the RAM blk device, own process): the driver
 * queue keeps `used_event` current, so every completion is signalled — with the bit negotiated and
 * `used_event` left at 0 the device would signal once and then stay silent until its index wrapped.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { VirtioFeature } from "@vhostkit/wire";
import { Guest } from "../src/index.js";
import { startRamBlk } from "./helpers/ram-blk-process.js";

test("EVENT_IDX: 200 blk reads, 8 at a time, all complete", async () => {
  const blkProcess = await startRamBlk(["--size-mib", "1"]);
  const guest = new Guest();
  try {
    const device = await guest.addDevice({ socketPath: blkProcess.socket });
    const [q] = await device.start({ features: VirtioFeature.EVENT_IDX, queues: [0], queueSize: 32 });
    assert.equal((device.ackedFeatures ?? 0n) & VirtioFeature.EVENT_IDX, VirtioFeature.EVENT_IDX, "negotiated");
    const header = new Uint8Array(16); // VIRTIO_BLK_T_IN, sector 0
    let done = 0;
    for (let round = 0; round < 25; round++) {
      const results = await Promise.all(Array.from({ length: 8 }, () => q!.transfer([header], [512, 1])));
      for (const r of results) assert.equal(r.buffers[1]![0], 0, "status OK");
      done += results.length;
    }
    assert.equal(done, 200);
  } finally {
    await guest.close();
    await blkProcess.stop();
  }
});
