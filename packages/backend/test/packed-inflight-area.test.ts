/**
 * The packed inflight layout on real memfd areas (docs/protocol.md#inflight-tracking-and-reconnect):
 * `InflightArea.allocate` makes the sealed memfd a back-end hands out with GET_INFLIGHT_FD, the
 * first device queue records into its mapping, and the "restarted process" maps the same fd again
 * with `InflightArea.attach` (as SET_INFLIGHT_FD does) — a second, independent mapping — over guest
 * RAM that is itself a memfd. The first queue dies at each point of publishing a used batch or of
 * taking a list; the second serves what was left, every list exactly once.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { GuestRam, guestAddress } from "@vhostkit/regions";
import { ChainBatch, FRESH_PACKED_VRING_BASE, PackedInflight, PackedQueue, packedInflightQueueBytes } from "@vhostkit/virtqueue";
import { PackedDriver } from "@vhostkit/virtqueue/driver";
import { InflightArea } from "../src/inflight-area.js";

const MiB = 1n << 20n;
const SIZE = 10;
const RINGS = { desc: 0x1000n, avail: 0x1200n, used: 0x1204n };
const INFO = { mmapSize: 0n, mmapOffset: 0n, numQueues: 2, queueSize: SIZE };

class Killed extends Error {}

/** Queue 1's region of `area`, dying at `when`. */
function mortal(area: InflightArea, when: "beforeFlags" | "afterFlags" | "recording" | undefined): PackedInflight {
  const region = area.queue(1);
  assert.ok(region instanceof PackedInflight);
  const r = region;
  const record = r.record.bind(r);
  const before = r.beforePublish.bind(r);
  const after = r.afterPublish.bind(r);
  r.record = (...a) => {
    if (when === "recording") throw new Killed();
    record(...a);
  };
  r.beforePublish = (u, w) => {
    before(u, w);
    if (when === "beforeFlags") throw new Killed();
  };
  r.afterPublish = () => {
    if (when === "afterFlags") throw new Killed();
    after();
  };
  return r;
}

for (const when of ["beforeFlags", "afterFlags", "recording"] as const) {
  test(`memfd area, process dies ${when === "recording" ? "while recording a list" : when === "beforeFlags" ? "before a used batch's flags" : "after a used batch's flags"}: a second mapping serves what was left, each list once`, async () => {
    const ram = new GuestRam({ blocks: [{ guestPhysAddr: 0n, size: MiB }] });
    const { area, fd, reply } = InflightArea.allocate("GET_INFLIGHT_FD", INFO, 2, true);
    assert.equal(reply.mmapSize, BigInt(2 * packedInflightQueueBytes(SIZE)));
    let second: InflightArea | undefined;
    try {
      const driver = new PackedDriver<number>({ size: SIZE, memory: ram, addresses: RINGS, reset: true });
      for (let t = 0; t < 4; t++) {
        const addr = guestAddress(0x10000n + BigInt(t) * 64n);
        driver.add(
          Array.from({ length: 1 + (t % 3) }, (_, j) => ({ addr: guestAddress(addr + BigInt(16 * j)), len: 16 })),
          [],
          t,
        );
      }
      driver.publish();
      const batch = new ChainBatch(SIZE);
      const first = new PackedQueue({ size: SIZE, memory: ram, addresses: RINGS, inflight: mortal(area, when) });
      first.start(FRESH_PACKED_VRING_BASE);
      const got: number[] = [];
      if (when === "recording") {
        assert.throws(() => first.pop(batch), Killed);
      } else {
        assert.equal(first.pop(batch, 3), 3);
        first.addUsed(batch.heads[1]!, 0);
        first.addUsed(batch.heads[0]!, 0);
        assert.throws(() => first.publishUsed(), Killed);
        got.push(...driver.collectUsed().map((u) => u.token!));
        assert.deepEqual(got, when === "afterFlags" ? [1, 0] : []);
      }
      area.dispose(); // the first process is gone
      second = InflightArea.attach("SET_INFLIGHT_FD", reply, fd, 2, true);
      const u = driver.lastUsedIndex;
      const queue = new PackedQueue({ size: SIZE, memory: ram, addresses: RINGS, inflight: second.queue(1) as PackedInflight });
      queue.start((u | (u << 16)) >>> 0);
      const order: number[] = [];
      for (let n; (n = queue.pop(batch)) > 0; ) {
        for (let c = 0; c < n; c++) order.push(batch.heads[c]!);
        queue.pushUsed(batch);
        queue.publishUsed();
      }
      got.push(...driver.collectUsed().map((u) => u.token!));
      assert.deepEqual([...got].sort(), [0, 1, 2, 3], `served ${order.join()}`);
      assert.equal(driver.numFree, SIZE);
      assert.equal(queue.stop(), (driver.availIndex | (driver.lastUsedIndex << 16)) >>> 0);
    } finally {
      area.dispose();
      second?.dispose();
      fd.close();
      ram.dispose();
    }
  });
}

test("memfd area: queue 0's region stays untouched by queue 1's records (regions back to back at the packed stride)", () => {
  const { area, fd } = InflightArea.allocate("GET_INFLIGHT_FD", INFO, 2, true);
  try {
    const q0 = area.queue(0) as PackedInflight;
    const q1 = area.queue(1) as PackedInflight;
    const ring = new Uint16Array(8 * SIZE);
    q1.recover(ring, SIZE, { availIdx: 0, availWrap: true, usedIdx: 0, usedWrap: true });
    assert.equal(q0.version, 0, "queue 0 never started");
    assert.equal(q1.version, 1);
    assert.equal(area.queue(2), undefined);
  } finally {
    area.dispose();
    fd.close();
  }
});
