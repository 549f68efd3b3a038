/**
 * virtio-blk requests through the driver's pooled guest buffers, against a real back-end (the RAM
 * blk device, own process): `readWith` keeps requests in flight from its callbacks, every read sees
 * its own sectors, the buffers are reused (guest RAM in use stops growing), requests larger than a
 * pooled buffer take the general path, and a failed device reports through the callback.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { BlkDriver, Guest, isFrontendError, type FrontendError } from "../src/index.js";
import { startRamBlk } from "./helpers/ram-blk-process.js";

const SECTORS = 256;
/** Sector `s` of the test disk: every byte `s * 7 + 1`. */
const fillOf = (s: number): number => (s * 7 + 1) & 0xff;

/** `count` reads of `per` sectors, `depth` in flight, each next one submitted from a callback; resolves with how many saw wrong bytes. */
function readAll(blk: BlkDriver, count: number, depth: number, per: number): Promise<number> {
  return new Promise((resolve, reject) => {
    let next = 0;
    let done = 0;
    let wrong = 0;
    const submit = (): void => {
      const s = (next++ * per) % SECTORS;
      blk.readWith(BigInt(s), per, (err, data) => {
        if (err !== undefined) return reject(err);
        for (let k = 0; k < per; k++) if (data?.[k * 512] !== fillOf(s + k) || data?.[k * 512 + 511] !== fillOf(s + k)) wrong++;
        if (++done === count) return resolve(wrong);
        if (next < count) submit();
      });
    };
    for (let k = 0; k < depth; k++) submit();
  });
}

test("readWith: 2000 reads, 16 in flight, each next one submitted from a callback, all see their own sectors; pooled buffers are reused", async () => {
  const blkProcess = await startRamBlk(["--size-mib", "1"]);
  const guest = new Guest();
  try {
    const device = await guest.addDevice({ socketPath: blkProcess.socket });
    const blk = await BlkDriver.attach(device, { queueSize: 64 });
    const rings = guest.allocator.allocatedBytes;
    for (let s = 0; s < SECTORS; s += 8) {
      const data = new Uint8Array(8 * 512);
      for (let k = 0; k < 8; k++) data.fill(fillOf(s + k), k * 512, (k + 1) * 512);
      await blk.write(BigInt(s), data);
    }
    assert.equal(await readAll(blk, 200, 16, 8), 0);
    const inUse = guest.allocator.allocatedBytes;
    assert.equal(await readAll(blk, 2000, 16, 8), 0);
    assert.equal(await readAll(blk, 500, 16, 1), 0);
    assert.equal(guest.allocator.allocatedBytes, inUse, "no more guest RAM than the first round's buffers");
    // At most one pooled buffer per request in flight (16 + the write's one), each 32 + 16 KiB: reused, and kept.
    assert.ok(inUse > rings && inUse - rings <= 17n * (32n + 16384n), `${inUse - rings} bytes of request buffers`);
    assert.equal(device.queue(0).inFlight, 0);
    // Larger than a pooled buffer (16 KiB): the general path, the same bytes.
    const big = await blk.read(0n, 64);
    for (let k = 0; k < 64; k++) assert.equal(big[k * 512], fillOf(k), `sector ${k}`);
    // Past the end: the device's IOERR reaches the callback.
    const err = await new Promise<FrontendError | undefined>((r) => blk.readWith(BigInt(2048 - 1), 8, (e) => r(e)));
    assert.equal(err?.code, "IO_ERROR");
  } finally {
    await guest.close();
    await blkProcess.stop();
  }
});

test("readWith on a device that failed: DEVICE_FAILED through the callback, at once", async () => {
  const blkProcess = await startRamBlk(["--size-mib", "1"]);
  const guest = new Guest();
  try {
    const device = await guest.addDevice({ socketPath: blkProcess.socket });
    const blk = await BlkDriver.attach(device);
    const first = await new Promise<FrontendError | undefined>((r) => blk.readWith(0n, 1, (e) => r(e)));
    assert.equal(first, undefined);
    await blkProcess.stop(); // the back-end dies: the device fails
    const err = await new Promise<FrontendError | undefined>((r) => {
      const poll = (): void =>
        blk.readWith(0n, 1, (e) => {
          if (e !== undefined && e.code !== "IO_ERROR") r(e);
          else setTimeout(poll, 20);
        });
      poll();
    });
    assert.ok(isFrontendError(err) && err.code === "DEVICE_FAILED", String(err));
    assert.equal(device.queue(0).error?.code, "DEVICE_FAILED");
  } finally {
    await guest.close();
  }
});
