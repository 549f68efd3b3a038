/**
 * The ring runner without a socket: real memfd guest RAM shared with a memory table, the virtqueue
 * driver side as the guest, and eventfds handed to the runner the way the front-end's fds arrive.
 * Its invariants: configuration only while stopped, one handler run per ring, stop after the
 * handlers return, rings suspended while their memory is gone.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { VRING_F_LOG, isVhostUserError } from "@vhostkit/wire";
import { guestAddress } from "@vhostkit/regions";
import { adaptPollMicros } from "../src/ring-poll.js";
import { deferred, FEATURES, refused, rig } from "./helpers/ring-rig.js";

test("a kick runs the handler; the driver gets its used buffer and a call", { timeout: 10000 }, async () => {
  const r = rig();
  try {
    const { driver, call, kick } = r.start(0);
    assert.deepEqual(r.events, ["running true"]);
    const reply = await r.request(driver, 0, "kick");
    kick.signal();
    await call.wait();
    assert.deepEqual(
      driver.collectUsed().map((u) => u.len),
      [4],
    );
    assert.equal(await reply(), "kcik");
  } finally {
    await r.dispose();
  }
  assert.deepEqual(r.events, ["running true", "running false"]);
});

test("configuration: only on a stopped ring, within the device's limits", { timeout: 10000 }, async () => {
  const r = rig();
  try {
    const [, kick] = r.eventFd();
    assert.throws(() => r.runner.setKick("SET_VRING_KICK", 1, kick, FEATURES), refused("PROTOCOL", /^set_vring_kick: vring 1 has no size or addresses yet$/));
    assert.throws(() => r.runner.setSize("SET_VRING_NUM", 2, 8), refused("PROTOCOL", /vring 2 out of range \(2 queues\)/));
    assert.throws(() => r.runner.setSize("SET_VRING_NUM", 0, 12), refused("PROTOCOL", /queue size 12 is not a power of two <= 64/));
    assert.throws(() => r.runner.setSize("SET_VRING_NUM", 0, 128), refused("PROTOCOL", /queue size 128/));
    assert.throws(
      () => r.runner.setAddresses("SET_VRING_ADDR", 0, { desc: 0x1008n, avail: 0n, used: 0n }, 0),
      refused("PROTOCOL", /misaligned ring: desc 0x1008/),
    );
    r.runner.setAddresses("SET_VRING_ADDR", 0, { desc: 0n, avail: 0n, used: 0n }, VRING_F_LOG, 0n); // the log flag: accepted on a split ring (docs/protocol.md#dirty-page-logging)
    assert.throws(
      () => r.runner.setBase("SET_VRING_BASE", 0, 0x1_0000),
      (e: unknown) => isVhostUserError(e) && /bits 16-31/.test(e.message),
    );
    r.start(0);
    assert.equal(r.runner.isStarted(0), true);
    for (const change of [
      () => r.runner.setSize("SET_VRING_NUM", 0, 8),
      () => r.runner.setBase("SET_VRING_BASE", 0, 0),
      () => r.runner.setAddresses("SET_VRING_ADDR", 0, { desc: 0n, avail: 0n, used: 0n }, 0),
    ]) {
      assert.throws(change, refused("PROTOCOL", /vring 0 is started/));
    }
  } finally {
    await r.dispose();
  }
});

test("one handler run per ring: what arrives during a run makes it go round once more", { timeout: 10000 }, async () => {
  const r = rig();
  try {
    const hold = deferred();
    r.device.state.hold = hold.promise;
    const { driver, call } = r.start(0); // the first run starts at once and waits on `hold`
    assert.equal(r.device.state.runs, 1);
    const replies = [await r.request(driver, 0, "one"), await r.request(driver, 1, "two")];
    for (let i = 0; i < 3; i++) r.runner.setEnabled("SET_VRING_ENABLE", 0, true); // each would run the handler
    assert.equal(r.device.state.runs, 1, "no second run while the first one is busy");
    r.device.state.hold = undefined;
    hold.resolve();
    await call.wait();
    await r.runner.quiesce();
    assert.equal(r.device.state.maxActive, 1, "never two runs at once");
    assert.equal(r.device.state.runs, 2, "one more run for everything that arrived meanwhile");
    assert.equal(driver.collectUsed().length, 2);
    assert.deepEqual(await Promise.all(replies.map((f) => f())), ["eno", "owt"]);
  } finally {
    await r.dispose();
  }
});

test("stop waits for the running handler, then reports the next avail index; a stopped ring can be reconfigured", { timeout: 10000 }, async () => {
  const r = rig();
  try {
    const { driver } = r.start(0);
    await r.request(driver, 0, "first");
    const hold = deferred();
    r.device.state.hold = hold.promise;
    r.runner.setEnabled("SET_VRING_ENABLE", 0, true); // a run that consumes "first", held
    r.runner.beginStop();
    assert.equal(r.runner.running, false, "not running as soon as the stop begins");
    let stoppedAt: number | undefined;
    const stopping = r.runner.stop("GET_VRING_BASE", 0).then((base) => (stoppedAt = base));
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(stoppedAt, undefined, "the ring does not stop under a running handler");
    assert.equal(r.runner.isStarted(0), true);
    hold.resolve();
    await stopping;
    assert.equal(stoppedAt, 1, "next avail index after the one chain served");
    assert.equal(r.runner.isStarted(0), false);
    r.runner.setSize("SET_VRING_NUM", 0, 16);
    assert.deepEqual(r.events, ["running true", "running false"]);
  } finally {
    await r.dispose();
  }
});

test("a ring whose memory leaves the table waits, then serves what it missed once the memory is back", { timeout: 10000 }, async () => {
  const r = rig();
  try {
    const { driver, call } = r.start(0);
    await r.runner.quiesce(); // the first run (nothing queued yet) is over before the memory goes
    r.removeRam();
    r.runner.remap();
    const reply = await r.request(driver, 0, "held");
    const runs = r.device.state.runs;
    r.runner.setEnabled("SET_VRING_ENABLE", 0, true);
    assert.equal(r.device.state.runs, runs, "no run while the ring's memory is gone");
    r.addRam();
    r.runner.remap();
    await call.wait();
    assert.equal(driver.collectUsed().length, 1);
    assert.equal(await reply(), "dleh");
    assert.ok(!r.events.some((e) => e.startsWith("broken")), r.events.join("; "));
  } finally {
    await r.dispose();
  }
});

test("a failing handler breaks its ring: the err fd is signalled and the failure reported", { timeout: 10000 }, async () => {
  const r = rig();
  try {
    const [err, theirErr] = r.eventFd();
    r.runner.setErr("SET_VRING_ERR", 1, theirErr);
    r.device.state.fail = new Error("device fault");
    r.start(1);
    await r.runner.quiesce();
    assert.equal(err.poll(), 1n);
    assert.deepEqual(r.events, ["running true", "broken 1: device fault"]);
  } finally {
    await r.dispose();
  }
});

test("after close nothing runs any more and every ring is stopped", { timeout: 10000 }, async () => {
  const r = rig();
  try {
    r.start(0);
    r.start(1);
    await r.runner.quiesce();
    const runs = r.device.state.runs;
    r.runner.close();
    assert.equal(r.runner.running, false);
    assert.equal(r.runner.isStarted(0) || r.runner.isStarted(1), false);
    r.runner.setEnabled("SET_VRING_ENABLE", 0, true);
    assert.equal(r.device.state.runs, runs);
  } finally {
    await r.dispose();
  }
});

test("a ring whose memory leaves the table while its handler runs is suspended, not broken, and serves the request once the memory is back", {
  timeout: 10000,
}, async () => {
  const r = rig();
  try {
    const [err, theirErr] = r.eventFd();
    r.runner.setErr("SET_VRING_ERR", 0, theirErr);
    const { driver, call } = r.start(0);
    await r.runner.quiesce();
    const hold = deferred();
    r.device.state.hold = hold.promise;
    const reply = await r.request(driver, 0, "mid-run");
    r.runner.setEnabled("SET_VRING_ENABLE", 0, true); // a run that waits on `hold` before it pops
    r.removeRam();
    r.runner.remap(); // the ring's memory is gone while the handler runs
    r.device.state.hold = undefined;
    hold.resolve();
    await r.runner.quiesce();
    assert.deepEqual(r.events, ["running true"], "no broken ring reported");
    assert.equal(err.poll(), 0n, "the err fd was not signalled");
    r.addRam();
    r.runner.remap();
    await call.wait();
    assert.equal(driver.collectUsed().length, 1);
    assert.equal(await reply(), "nur-dim");
  } finally {
    await r.dispose();
  }
});

test("a ring closed under its running handler ends the run quietly", { timeout: 10000 }, async () => {
  const r = rig();
  try {
    const { driver } = r.start(0);
    await r.runner.quiesce();
    const hold = deferred();
    r.device.state.hold = hold.promise;
    await r.request(driver, 0, "late");
    r.runner.setEnabled("SET_VRING_ENABLE", 0, true);
    r.runner.close(); // the connection ended: every ring stops at once
    r.device.state.hold = undefined;
    hold.resolve();
    await r.runner.quiesce();
    assert.deepEqual(r.events, ["running true", "running false"], "no broken ring reported after close");
  } finally {
    await r.dispose();
  }
});

for (const packed of [false, true]) {
  const layout = packed ? "packed" : "split";
  test(`${layout}: after a run the ring is polled with notifications off; a request published meanwhile is served without a kick`, {
    timeout: 10000,
  }, async () => {
    const r = rig({ packed, pollMicros: 60_000_000 }); // a minute: the test ends it by closing the runner
    try {
      const { driver, call } = r.start(0); // nothing queued: the first run polls
      await new Promise((resolve) => setImmediate(resolve));
      assert.equal(r.device.state.runs, 1);
      await r.ram.write(guestAddress(0x10000n), new TextEncoder().encode("poll"));
      driver.add([{ addr: 0x10000n, len: 4 }], [{ addr: 0x10080n, len: 4 }]);
      assert.equal(driver.publish(), false, "the device asked not to be kicked while it polls");
      await call.wait(); // no kick was sent
      assert.deepEqual(
        driver.collectUsed().map((u) => u.len),
        [4],
      );
      assert.equal(r.device.state.runs, 2);
      const out = new Uint8Array(4);
      await r.ram.read(guestAddress(0x10080n), out);
      assert.equal(new TextDecoder().decode(out), "llop");
    } finally {
      await r.dispose(); // returns only if closing the runner ends the minute-long poll
    }
  });
}

test("polling off, or once the window has passed: notifications are on again and the run is over", { timeout: 10000 }, async () => {
  for (const pollMicros of [0, 1000]) {
    const r = rig({ pollMicros });
    try {
      const { driver, kick, call } = r.start(0);
      await r.runner.quiesce(); // the first run, its poll included, is over
      await r.ram.write(guestAddress(0x10000n), new TextEncoder().encode("kick"));
      driver.add([{ addr: 0x10000n, len: 4 }], [{ addr: 0x10080n, len: 4 }]);
      assert.equal(driver.publish(), true, `pollMicros ${pollMicros}: the device waits for a kick`);
      kick.signal();
      await call.wait();
      assert.deepEqual(
        driver.collectUsed().map((u) => u.len),
        [4],
      );
    } finally {
      await r.dispose();
    }
  }
});

test("the polling window adapts to the kick after a miss: doubled when a window up to the maximum would have caught it, else halved, within an eighth of the maximum and the maximum", () => {
  assert.equal(adaptPollMicros(12.5, 40, 50), 25, "the kick came 40 µs after the poll began: a 50 µs window would have caught it");
  assert.equal(adaptPollMicros(50, 50, 50), 50);
  assert.equal(adaptPollMicros(50, 900, 50), 25, "an idle driver: the window shrinks");
  assert.equal(adaptPollMicros(6.25, 900, 50), 6.25);
  assert.equal(adaptPollMicros(0, 10, 0), 0, "polling off stays off");
});
