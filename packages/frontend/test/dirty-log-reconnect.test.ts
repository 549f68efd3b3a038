/**
 * Dirty page logging across a reconnect (docs/protocol.md#dirty-page-logging): the RAM blk example
 * is SIGKILLed while the device logs and started again on the same socket; the restarted back-end
 * gets SET_LOG_BASE with the same log, LOG_ALL and the rings' log flag before it runs, so the pages
 * it writes are marked in the log the caller already holds, on split and packed rings. Stopping
 * afterwards turns the new back-end's logging off. A log disposed before the reconnect turns
 * logging off instead of failing the device.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { BlkDriver, Guest, type Device, type ReconnectEvent } from "../src/index.js";
import { ringPages } from "./helpers/dirty-pages.js";
import { RestartableBlk } from "./helpers/restartable-blk.js";

const POLICY = { initialDelayMs: 20, maxDelayMs: 200, attempts: 200 };

/** Kills the back-end, starts it again, and waits until the device took the new one over. */
async function restart(dev: RestartableBlk, device: Device): Promise<ReconnectEvent> {
  const event = new Promise<ReconnectEvent>((resolve) => {
    const off = device.onReconnect((e) => {
      off();
      resolve(e);
    });
  });
  await dev.kill();
  await dev.start();
  return event;
}

for (const packed of [false, true]) {
  test(`${packed ? "packed" : "split"} rings: a back-end restarted while logging marks its writes in the same log; stopDirtyLog turns it off`, {
    timeout: 60_000,
  }, async () => {
    const dev = new RestartableBlk();
    const guest = new Guest({ ramSize: 16n << 20n });
    try {
      await dev.start();
      const device = await guest.addDevice({ socketPath: dev.socket, reconnect: POLICY, dirtyLog: true, packedRing: packed });
      const blk = await BlkDriver.attach(device, { queueSize: 16 });
      await blk.write(0n, new Uint8Array(4096).fill(7));
      const log = await device.startDirtyLog();
      try {
        await blk.read(0n, 8);
        assert.ok(log.takeDirtyPages().length > 0, "the first back-end marks");
        const event = restart(dev, device);
        // The hang-up is seen once the device waits for something: this read is served by the restarted back-end.
        const data = await blk.read(0n, 8);
        assert.equal((await event).count, 1);
        assert.deepEqual(data, new Uint8Array(4096).fill(7), "the disk survived");
        log.takeDirtyPages();
        const q = blk.queue;
        const ring = new Set(ringPages(q));
        await blk.read(0n, 8);
        const marked = log.takeDirtyPages();
        assert.ok(marked.length > 0, "the restarted back-end marks in the same log");
        assert.ok(
          ringPages(q).every((p) => marked.includes(p)),
          `every ring page the device writes is marked: ${[...ring].map((p) => p.toString(16))} in ${marked.map((p) => p.toString(16))}`,
        );
        assert.ok(
          marked.some((p) => !ring.has(p)),
          "the read's data and status pages are marked too",
        );
        await device.stopDirtyLog();
        // A device marks right after it publishes, so the front-end may see a completion before its
        // mark: marks made before the back-end took the stop in are drained, none may come after it.
        log.takeDirtyPages();
        await blk.read(0n, 8);
        assert.deepEqual(log.takeDirtyPages(), [], "logging off on the restarted back-end");
      } finally {
        log.dispose();
      }
      assert.equal(device.failed, undefined);
    } finally {
      await guest.close();
      await dev.dispose();
    }
  });
}

test("a log disposed while logging: the restarted back-end runs without one and the device keeps working", { timeout: 60_000 }, async () => {
  const dev = new RestartableBlk();
  const guest = new Guest({ ramSize: 16n << 20n });
  try {
    await dev.start();
    const device = await guest.addDevice({ socketPath: dev.socket, reconnect: POLICY, dirtyLog: true });
    const blk = await BlkDriver.attach(device, { queueSize: 16 });
    const log = await device.startDirtyLog();
    log.dispose();
    const event = restart(dev, device);
    await blk.read(0n, 8);
    assert.equal((await event).count, 1);
    assert.equal(device.failed, undefined);
    // Logging is off now: a fresh log can be started on the new back-end and records its writes.
    const again = await device.startDirtyLog();
    try {
      await blk.read(0n, 8);
      assert.ok(again.takeDirtyPages().length > 0);
    } finally {
      await device.stopDirtyLog();
      again.dispose();
    }
  } finally {
    await guest.close();
    await dev.dispose();
  }
});
