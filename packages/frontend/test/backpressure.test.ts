/**
 * More requests than the ring has descriptors, against a real back-end (the RAM blk device, own
 * process): the extra requests wait for completions instead of failing, in submission order, and
 * every one completes with the right bytes.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { BlkDriver, Guest, isFrontendError } from "../src/index.js";
import { startRamBlk } from "./helpers/ram-blk-process.js";

test("200 blk requests at once on a queue of 8 descriptors all complete, with their own data", async () => {
  const blkProcess = await startRamBlk(["--size-mib", "1"]);
  const guest = new Guest();
  try {
    const device = await guest.addDevice({ socketPath: blkProcess.socket });
    const blk = await BlkDriver.attach(device, { queueSize: 8 }); // 2 requests of 3 descriptors fit
    const sector = (i: number): Uint8Array => new Uint8Array(512).fill(i & 0xff);
    const writes = Array.from({ length: 100 }, (_, i) => blk.write(BigInt(i), sector(i)));
    await new Promise((r) => setImmediate(r)); // the writes copy their data into guest RAM, then submit
    assert.ok(device.queue(0).inFlight > 2, `most requests wait for descriptors (${device.queue(0).inFlight} in flight)`);
    await Promise.all(writes);
    const reads = await Promise.all(Array.from({ length: 100 }, (_, i) => blk.read(BigInt(i), 1)));
    reads.forEach((r, i) => assert.deepEqual(r, sector(i), `sector ${i}`));
    assert.equal(device.queue(0).inFlight, 0);
    assert.equal(guest.allocator.allocatedBytes > 0n, true, "only the rings stay allocated");
    // A chain that can never fit is refused at once, not left waiting forever.
    await assert.rejects(
      device.queue(0).submit(
        Array.from({ length: 9 }, () => ({ addr: 0n, len: 1 })),
        [],
      ),
      (e: unknown) => isFrontendError(e) && e.code === "BAD_ARGUMENT",
    );
  } finally {
    await guest.close();
    await blkProcess.stop();
  }
});
