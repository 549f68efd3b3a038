/**
 * What a device's queue handler can tell the ring runner besides its used buffers: `false` (a
 * receive queue it fills only when it has frames: not run again for the buffers waiting there), and
 * `QueueContext.fail` (a guest error of the device's own protocol, reported for that queue only, even
 * from another queue's handler).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { ChainBatch } from "@vhostkit/virtqueue";
import type { DeviceBackend, QueueContext } from "../src/index.js";
import { deferred, rig } from "./helpers/ring-rig.js";

/** Gives the rig's device another queue handler (the runner holds the same device object). */
function handle(r: ReturnType<typeof rig>, processQueue: DeviceBackend["processQueue"]): void {
  (r.device as { processQueue: DeviceBackend["processQueue"] }).processQueue = processQueue;
}

test("a handler that returns false is not run again for the buffers it left; the next kick runs it", { timeout: 10000 }, async () => {
  const r = rig();
  try {
    let runs = 0;
    let ran = deferred();
    handle(r, () => {
      runs++;
      ran.resolve();
      return false;
    });
    const { driver, kick } = r.start(0);
    assert.equal(runs, 1, "run once when the ring starts");
    await r.request(driver, 0, "frame buffer");
    ran = deferred();
    kick.signal();
    await ran.promise;
    await r.runner.quiesce(); // a handler run again for the chain it left would never let this resolve
    assert.equal(runs, 2, "one run for one kick, although a chain is still available");
    ran = deferred();
    kick.signal();
    await ran.promise;
    await r.runner.quiesce();
    assert.equal(runs, 3);
  } finally {
    await r.dispose();
  }
});

test("QueueContext.fail from another queue's handler breaks that queue only: err fd, report, no more runs until it restarts", { timeout: 10000 }, async () => {
  const r = rig();
  try {
    let rx: QueueContext | undefined;
    const runs = [0, 0];
    const batch = new ChainBatch(8);
    handle(r, (ctx: QueueContext) => {
      runs[ctx.index]!++;
      if (ctx.index === 0) {
        rx = ctx;
        return false;
      }
      for (let n; (n = ctx.queue.pop(batch)) > 0; ) {
        for (let c = 0; c < n; c++) {
          if (batch.readableBytes[c] === 3) rx?.fail(new Error("NET_RX_BUFFER_TOO_SMALL: a 3-byte frame"));
          ctx.queue.addUsed(batch.head(c), 0);
        }
      }
      return undefined;
    });
    r.start(0);
    const [err, theirErr] = r.eventFd();
    r.runner.setErr("SET_VRING_ERR", 0, theirErr);
    const ring1 = r.start(1);
    await r.request(ring1.driver, 0, "bad");
    ring1.kick.signal();
    await ring1.call.wait();
    assert.equal(ring1.driver.collectUsed().length, 1);
    assert.equal(await err.wait(), 1n, "ring 0's err fd signalled");
    assert.deepEqual(
      r.events.filter((e) => e.startsWith("broken")),
      ["broken 0: NET_RX_BUFFER_TOO_SMALL: a 3-byte frame"],
    );
    rx?.fail(new Error("a second error"));
    assert.equal(r.events.filter((e) => e.startsWith("broken")).length, 1, "the first error stays");
    const before = runs[0] ?? 0;
    r.runner.setEnabled("SET_VRING_ENABLE", 0, true); // would run an unbroken ring's handler at once
    assert.equal(runs[0], before, "a failed ring is not run");
    await r.request(ring1.driver, 1, "good frame");
    ring1.kick.signal();
    await ring1.call.wait();
    assert.equal(ring1.driver.collectUsed().length, 1, "ring 1 carries on");
    await r.runner.stop("GET_VRING_BASE", 0);
    r.start(0);
    assert.equal(runs[0], before + 1, "a restarted ring runs again");
  } finally {
    await r.dispose();
  }
});
