/**
 * Packed rings in the back-end framework (docs/virtqueue.md#packed-rings): the ring runner builds a
 * `PackedQueue` when the driver acknowledged VIRTIO_F_RING_PACKED, with the packed rules for size
 * (no power of two needed), alignment (driver area 4 bytes) and the vring base (both positions and
 * wrap counters; docs/protocol.md#vring-set-up-messages); the framework offers the bit unless the
 * device opts out.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Endpoint, socketPair } from "@vhostkit/transport";
import { FRESH_PACKED_VRING_BASE } from "@vhostkit/virtqueue";
import { ProtocolFeature, VirtioFeature } from "@vhostkit/wire";
import { serveFd, type DeviceBackend } from "../src/index.js";
import { FEATURES, PACKED_FEATURES, refused, rig } from "./helpers/ring-rig.js";
import { ScriptedFrontend } from "./helpers/scripted-frontend.js";

/** The packed base `num` of avail and used position `offset` with wrap counter `wrap` (nothing in flight). */
const settled = (offset: number, wrap: 0 | 1): number => ((offset | (wrap << 15)) * 0x1_0001) >>> 0;

test("packed: a queue of 6 (not a power of two) serves chains across the ring's end; GET_VRING_BASE gives both positions and wrap counters; a restart there continues", {
  timeout: 10000,
}, async () => {
  const r = rig({ packed: true });
  try {
    const { driver, call, kick } = r.start(0, 6);
    const first = [];
    for (let i = 0; i < 2; i++) first.push(await r.request(driver, i, `ab${i}`)); // 2 descriptors each
    kick.signal();
    await call.wait();
    assert.deepEqual(
      driver.collectUsed().map((u) => u.len),
      [3, 3],
    );
    assert.deepEqual(await Promise.all(first.map((f) => f())), ["0ba", "1ba"]);
    await r.runner.quiesce();
    const base = await r.runner.stop("GET_VRING_BASE", 0);
    assert.equal(base, settled(4, 1), `0x${base.toString(16)}`);
    // Restarted at that base, the next 2 chains wrap past the end of the 6-descriptor ring.
    r.runner.setBase("SET_VRING_BASE", 0, base);
    const [call2, theirCall] = r.eventFd();
    r.runner.setCall("SET_VRING_CALL", 0, theirCall);
    const [kick2, theirKick] = r.eventFd();
    r.runner.setKick("SET_VRING_KICK", 0, theirKick, PACKED_FEATURES);
    r.runner.setEnabled("SET_VRING_ENABLE", 0, true);
    const second = [];
    for (let i = 0; i < 2; i++) second.push(await r.request(driver, 4 + i, `cd${i}`));
    kick2.signal();
    let used = 0;
    while (used < 2) {
      await call2.wait();
      used += driver.collectUsed().length;
      driver.enableInterrupts();
    }
    assert.deepEqual(await Promise.all(second.map((f) => f())), ["0dc", "1dc"]);
    await r.runner.quiesce();
    assert.equal(await r.runner.stop("GET_VRING_BASE", 0), settled(2, 0), "two slots into the second lap: wrap counters 0");
    assert.ok(!r.events.some((e) => e.startsWith("broken")), r.events.join("; "));
  } finally {
    await r.dispose();
  }
});

test("packed: set-up checks follow the layout — any size from 1, a 4-byte aligned driver area, a base that fits the size; a ring set up packed does not start split", {
  timeout: 10000,
}, async () => {
  const r = rig({ packed: true });
  try {
    r.runner.setSize("SET_VRING_NUM", 0, 12);
    assert.throws(() => r.runner.setSize("SET_VRING_NUM", 0, 0), refused("PROTOCOL", /queue size 0 is not in 1\.\.64 \(packed ring\)/));
    assert.throws(() => r.runner.setSize("SET_VRING_NUM", 0, 65), refused("PROTOCOL", /queue size 65/));
    assert.throws(
      () => r.runner.setAddresses("SET_VRING_ADDR", 0, { desc: 0x1000n, avail: 0x1202n, used: 0x1400n }, 0),
      refused("PROTOCOL", /misaligned packed ring: desc 0x1000 avail 0x1202/),
    );
    r.runner.setAddresses("SET_VRING_ADDR", 0, { desc: 0x1000n, avail: 0x1204n, used: 0x1400n }, 0);
    // Offsets must be below the size; the used position may not be ahead of the avail one.
    assert.throws(() => r.runner.setBase("SET_VRING_BASE", 0, 12), refused("PROTOCOL", /packed vring base 0xc: .*not below queue size 12/));
    assert.throws(() => r.runner.setBase("SET_VRING_BASE", 0, 0x0001_0000), refused("PROTOCOL", /packed vring base 0x10000/));
    r.runner.setBase("SET_VRING_BASE", 0, 0x8003_8005); // avail 5, used 3 (two in flight), both in lap 1
    // SET_FEATURES without RING_PACKED after a packed set-up: size 12 cannot be a split ring.
    const [, kick] = r.eventFd();
    assert.throws(() => r.runner.setKick("SET_VRING_KICK", 0, kick, FEATURES), refused("PROTOCOL", /queue size 12 is not a power of two <= 12 \(split ring\)/));
    assert.equal(r.runner.isStarted(0), false);
  } finally {
    await r.dispose();
  }
});

test("packed: a ring that never ran reports and starts at the fresh packed base, after RESET_DEVICE too", { timeout: 10000 }, async () => {
  const r = rig({ packed: true });
  try {
    assert.equal(await r.runner.stop("GET_VRING_BASE", 1), FRESH_PACKED_VRING_BASE);
    const { driver, call, kick } = r.start(1, 5);
    const reply = await r.request(driver, 0, "fresh");
    kick.signal();
    await call.wait();
    assert.equal(await reply(), "hserf");
    await r.runner.quiesce();
    assert.equal(await r.runner.stop("GET_VRING_BASE", 1), settled(2, 1), "one chain of two descriptors");
    await r.runner.stopAll();
    r.runner.forgetConfiguration(); // RESET_DEVICE: the features go too, the layout is split again
    assert.equal(await r.runner.stop("GET_VRING_BASE", 1), 0);
    r.runner.featuresAcked(PACKED_FEATURES);
    assert.equal(await r.runner.stop("GET_VRING_BASE", 1), FRESH_PACKED_VRING_BASE);
  } finally {
    await r.dispose();
  }
});

const device: DeviceBackend = { features: 1n << 5n, queueCount: 1, maxQueueSize: 64, processQueue() {} };

test("the framework offers RING_PACKED unless the device sets packedRing: false; then acknowledging it is refused", { timeout: 10000 }, async () => {
  for (const [d, offered] of [
    [device, true],
    [{ ...device, packedRing: false }, false],
  ] as const) {
    const [mine, theirs] = socketPair();
    const served = serveFd(theirs, d);
    const fe = new ScriptedFrontend(new Endpoint(mine));
    try {
      const features = (await fe.get("GET_FEATURES")) as bigint;
      assert.equal((features & VirtioFeature.RING_PACKED) !== 0n, offered, `0x${features.toString(16)}`);
      assert.equal(await fe.ack("SET_PROTOCOL_FEATURES", ProtocolFeature.REPLY_ACK), 0n);
      assert.equal(await fe.ack("SET_FEATURES", VirtioFeature.VERSION_1 | VirtioFeature.RING_PACKED), offered ? 0n : 1n);
    } finally {
      fe.close();
      await served;
    }
  }
});
