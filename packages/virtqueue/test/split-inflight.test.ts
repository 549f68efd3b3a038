/**
 * Inflight I/O tracking on split rings (docs/protocol.md#inflight-tracking-and-reconnect): the
 * region's layout, marking and clearing in the protocol's order, and a restarted device queue that
 * serves the chains its predecessor left in flight — first, in counter order, exactly once.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ChainBatch, SPLIT_INFLIGHT_VERSION, SplitInflight, SplitQueue, isVirtqueueError, splitInflightQueueBytes } from "../src/index.js";
import { SplitDriver } from "../src/driver/index.js";
import { BUF_A, makeMemory, ringAddresses } from "./helpers/ring-fixture.js";

/** A region for one queue of `descNum` descriptors, and views of its fields. */
function region(descNum: number) {
  const bytes = new Uint8Array(splitInflightQueueBytes(descNum));
  const dv = new DataView(bytes.buffer);
  return {
    bytes,
    version: () => dv.getUint16(8, true),
    descNum: () => dv.getUint16(10, true),
    lastBatchHead: () => dv.getUint16(12, true),
    usedIdx: () => dv.getUint16(14, true),
    inflight: (i: number) => bytes[16 + 16 * i]!,
    counter: (i: number) => dv.getBigUint64(16 + 16 * i + 8, true),
    set: (off: number, v: number) => dv.setUint16(off, v, true),
  };
}

/** A device queue over `memory` tracking into `bytes`, started at `base`. */
function device(memory: ReturnType<typeof makeMemory>, size: number, bytes: Uint8Array, base: number) {
  const queue = new SplitQueue({ size, memory, addresses: ringAddresses(size), inflight: new SplitInflight(bytes, size) });
  queue.start(base);
  return queue;
}

/** A driver and a tracking device queue (size 8) over fresh memory, `n` chains submitted. */
function scenario(n: number) {
  const size = 8;
  const memory = makeMemory(size);
  const r = region(size);
  const driver = new SplitDriver<string>({ size, memory, addresses: ringAddresses(size) });
  const first = device(memory, size, r.bytes, 0);
  return { size, memory, r, driver, first, heads: submit(driver, n), batch: new ChainBatch(size) };
}

/** Adds `n` one-buffer chains tagged t<k>, publishes them, returns their heads. */
function submit(driver: SplitDriver<string>, n: number, from = 0): number[] {
  const heads: number[] = [];
  for (let k = 0; k < n; k++) heads.push(driver.add([{ addr: BUF_A + BigInt(16 * (from + k)), len: 16 }], [], `t${from + k}`));
  driver.publish();
  return heads;
}

describe("split inflight region", () => {
  test("per-queue sizes are libvhost-user's: 16 per descriptor plus 2, rounded up to 64", () => {
    assert.equal(splitInflightQueueBytes(1), 64);
    assert.equal(splitInflightQueueBytes(4), 128);
    assert.equal(splitInflightQueueBytes(128), 2112);
    assert.equal(splitInflightQueueBytes(1024), 16448);
    for (let q = 1; q <= 32768; q *= 2) assert.ok(splitInflightQueueBytes(q) >= 16 + 16 * q);
    assert.throws(
      () => splitInflightQueueBytes(3),
      (e) => isVirtqueueError(e) && e.code === "BAD_QUEUE_SIZE",
    );
  });

  test("a fresh region is initialised at start; chains are marked when popped and cleared once published", () => {
    const { size, r, driver, first: queue, heads, batch } = scenario(3);
    assert.equal(r.version(), SPLIT_INFLIGHT_VERSION);
    assert.equal(r.descNum(), size);
    assert.equal(queue.pop(batch), 3);
    assert.deepEqual(
      heads.map((h) => r.inflight(h)),
      [1, 1, 1],
    );
    assert.deepEqual(
      heads.map((h) => r.counter(h)),
      [0n, 1n, 2n],
    );
    queue.addUsed(heads[1]!, 0);
    assert.equal(r.lastBatchHead(), heads[1]);
    assert.equal(r.inflight(heads[1]!), 1, "still in flight until used.idx moves");
    queue.publishUsed();
    assert.deepEqual(
      heads.map((h) => r.inflight(h)),
      [1, 0, 1],
    );
    assert.equal(r.usedIdx(), 1);
    assert.deepEqual(
      driver.collectUsed().map((u) => u.token),
      ["t1"],
    );
  });

  test("a restarted device queue resubmits what was in flight, oldest first, before new avail entries; each chain completes once", () => {
    const { size, memory, r, driver, first, heads, batch } = scenario(4);
    assert.equal(first.pop(batch, 3), 3); // t0..t2 taken, t3 not yet
    first.addUsed(heads[1]!, 0);
    first.publishUsed();
    // The process dies here. Its successor starts at the used index, as a front-end sends it.
    const second = device(memory, size, r.bytes, 1);
    assert.equal(second.available(), 3);
    assert.equal(second.pop(batch), 2, "the resubmitted chains come in a batch of their own");
    assert.deepEqual([batch.head(0), batch.head(1)], [heads[0], heads[2]]);
    second.pushUsed(batch);
    assert.equal(second.pop(batch), 1);
    assert.equal(batch.head(0), heads[3]);
    second.pushUsed(batch);
    second.publishUsed();
    assert.deepEqual(
      driver
        .collectUsed()
        .map((u) => u.token)
        .sort(),
      ["t0", "t1", "t2", "t3"],
    );
    assert.equal(second.stop(), 4);
    for (let i = 0; i < size; i++) assert.equal(r.inflight(i), 0);
  });

  test("used.idx written but the region not: the last batch is cleared on recovery, not served again", () => {
    const { size, memory, r, first, heads, batch } = scenario(3);
    first.pop(batch);
    first.addUsed(heads[0]!, 0);
    first.addUsed(heads[2]!, 0);
    first.publishUsed();
    // As if the process died between storing used.idx and clearing the batch's flags.
    r.bytes[16 + 16 * heads[0]!] = 1;
    r.bytes[16 + 16 * heads[2]!] = 1;
    r.set(14, 0);
    const second = device(memory, size, r.bytes, 2);
    assert.equal(r.usedIdx(), 2);
    assert.equal(second.pop(batch), 1);
    assert.equal(batch.head(0), heads[1]);
    assert.equal(second.pop(batch), 0);
  });

  test("a hostile region: a broken batch list, flags past the ring, huge counters, an unknown version", () => {
    const size = 8;
    const memory = makeMemory(size);
    const r = region(16);
    r.set(8, SPLIT_INFLIGHT_VERSION);
    r.set(12, 0xffff); // last_batch_head out of range
    r.set(14, 0x8000); // used_idx far from the ring's
    for (const i of [2, 5, 12]) r.bytes[16 + 16 * i] = 1;
    new DataView(r.bytes.buffer).setBigUint64(16 + 16 * 5 + 8, 0xffff_ffff_ffff_ffffn, true);
    const driver = new SplitDriver<string>({ size, memory, addresses: ringAddresses(size) });
    submit(driver, 6); // descriptors 0..5 hold chains
    const q = new SplitQueue({ size, memory, addresses: ringAddresses(size), inflight: new SplitInflight(r.bytes, 16) });
    q.start(0);
    assert.equal(r.inflight(12), 0, "a flag past the ring is cleared");
    const batch = new ChainBatch(size);
    assert.equal(q.pop(batch), 2, "only the flagged heads inside the ring, a broken list walk bounded");
    assert.deepEqual([batch.head(0), batch.head(1)], [2, 5]);
    assert.equal(q.stop(), 2, "the avail index resumes after the two in flight");
    // An unknown version is treated as a fresh region.
    const s = region(size);
    s.set(8, 7);
    s.bytes[16] = 1;
    device(makeMemory(size), size, s.bytes, 3);
    assert.equal(s.version(), SPLIT_INFLIGHT_VERSION);
    assert.equal(s.inflight(0), 0);
  });

  test("a region too small or misaligned, or a ring larger than the region, is refused", () => {
    assert.throws(() => new SplitInflight(new Uint8Array(100), 8), RangeError);
    assert.throws(() => new SplitInflight(new Uint8Array(260).subarray(4), 8), RangeError);
    const size = 8;
    assert.throws(
      () => new SplitQueue({ size, memory: makeMemory(size), addresses: ringAddresses(size), inflight: new SplitInflight(new Uint8Array(64), 2) }),
      (e) => isVirtqueueError(e) && e.code === "BAD_QUEUE_SIZE",
    );
  });

  test("requeueOutstanding: after out-of-order completions a new untracked device serves exactly the outstanding chains", () => {
    const { size, memory, driver, first, heads, batch } = scenario(4);
    assert.equal(first.pop(batch), 4);
    first.addUsed(heads[3]!, 0);
    first.addUsed(heads[1]!, 0);
    first.publishUsed();
    assert.deepEqual(
      driver.collectUsed().map((u) => u.token),
      ["t3", "t1"],
    );
    const [h4] = submit(driver, 1, 4); // t4 added while the device is gone
    const base = driver.requeueOutstanding();
    assert.equal(base, 2);
    const untracked = new SplitQueue({ size, memory, addresses: ringAddresses(size) });
    untracked.start(base);
    assert.equal(untracked.pop(batch), 3);
    assert.deepEqual(
      [0, 1, 2].map((i) => batch.head(i)),
      [heads[0], heads[2], h4],
    );
    untracked.pushUsed(batch);
    untracked.publishUsed();
    assert.deepEqual(
      driver.collectUsed().map((u) => u.token),
      ["t0", "t2", "t4"],
    );
    assert.equal(driver.numFree, size);
  });

  test("requeueOutstanding keeps the chains a tracking device holds in the slots it resumes after", () => {
    const { size, memory, r, driver, first, heads, batch } = scenario(4);
    assert.equal(first.pop(batch, 3), 3);
    first.addUsed(heads[1]!, 0);
    first.publishUsed();
    driver.collectUsed();
    const base = driver.requeueOutstanding();
    const second = device(memory, size, r.bytes, base);
    const served: number[] = [];
    for (let n; (n = second.pop(batch)) > 0; ) {
      for (let i = 0; i < n; i++) served.push(batch.head(i));
      second.pushUsed(batch);
    }
    second.publishUsed();
    assert.deepEqual(served, [heads[0], heads[2], heads[3]]);
    assert.deepEqual(
      driver.collectUsed().map((u) => u.token),
      ["t0", "t2", "t3"],
    );
  });

  test("requeueOutstanding refuses while used elements are uncollected", () => {
    const { driver, first, batch } = scenario(2);
    first.pop(batch);
    first.pushUsed(batch);
    first.publishUsed();
    assert.throws(
      () => driver.requeueOutstanding(),
      (e) => isVirtqueueError(e) && e.code === "USED_OVERRUN",
    );
  });
});
