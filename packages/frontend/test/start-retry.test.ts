/**
 * A start() the back-end refuses part-way (a queue size above its maximum) leaves nothing behind:
 * the queues of that call are stopped and released, and start() works when retried with a size
 * the back-end takes. Against the RAM blk device in its own process.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { BlkDriver, Guest, isFrontendError } from "../src/index.js";
import { startRamBlk } from "./helpers/ram-blk-process.js";

test("a refused queue size unwinds the start; a retry with a smaller one drives the device", async () => {
  const blkProcess = await startRamBlk(["--size-mib", "1"]);
  const guest = new Guest();
  try {
    const device = await guest.addDevice({ socketPath: blkProcess.socket });
    const before = guest.allocator.allocatedBytes;
    // The RAM blk device takes queues of up to 1024 descriptors: SET_VRING_NUM 4096 is refused.
    await assert.rejects(device.start({ queueSize: 4096 }), (e: unknown) => isFrontendError(e) && e.code === "REFUSED" && e.detail.request === "SET_VRING_NUM");
    assert.equal(device.failed, undefined, "a refused queue size does not fail the device");
    assert.throws(
      () => device.queue(0),
      (e: unknown) => isFrontendError(e) && e.code === "BAD_ARGUMENT",
      "the refused queue was released",
    );
    assert.equal(guest.allocator.allocatedBytes, before, "its rings went back to the allocator");
    const blk = await BlkDriver.attach(device, { queueSize: 64 });
    const data = new Uint8Array(512).fill(0x5a);
    await blk.write(3n, data);
    assert.deepEqual(await blk.read(3n, 1), data);
    assert.equal(device.queue(0).size, 64);
  } finally {
    await guest.close();
    await blkProcess.stop();
  }
});
