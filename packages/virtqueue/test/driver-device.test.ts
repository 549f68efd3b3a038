/**
 * Driver side against device side over the in-memory multi-region guest: round trips, segments
 * across regions, remote (fallback) segments, u16 index wrap, start/stop bases, every queue size.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ChainBatch, SegmentCursor, SplitQueue, isVirtqueueError, readChain, writeChain } from "../src/index.js";
import { SplitDriver } from "../src/driver/index.js";
import { BUF_A, BUF_B, READ_ONLY, REMOTE, makeMemory, pair, ringAddresses, segmentsOf } from "./helpers/ring-fixture.js";

describe("driver <-> device", () => {
  test("one chain: readable then writable, bytes flow both ways", async () => {
    const { memory, driver, queue, batch } = pair();
    memory.writeSync(BUF_A, new TextEncoder().encode("hello"));
    const head = driver.add([{ addr: BUF_A, len: 5 }], [{ addr: BUF_A + 0x100n, len: 16 }], "t1");
    assert.equal(driver.publish(), true);
    assert.equal(queue.available(), 1);
    assert.equal(queue.pop(batch), 1);
    assert.equal(batch.head(0), head);
    assert.equal(batch.readableBytes[0], 5);
    assert.equal(batch.writableBytes[0], 16);
    assert.equal(batch.descriptorCount(0), 2);
    const dst = new Uint8Array(5);
    assert.equal(await readChain(queue.segments(batch, 0), queue.memory, dst), 5);
    assert.equal(new TextDecoder().decode(dst), "hello");
    const n = await writeChain(queue.segments(batch, 0), queue.memory, new TextEncoder().encode("world"));
    queue.addUsed(batch.head(0), n);
    assert.equal(queue.publishUsed(), true);
    const used = driver.collectUsed();
    assert.deepEqual(used, [{ id: head, len: 5, token: "t1" }]);
    const back = new Uint8Array(5);
    memory.readSync(BUF_A + 0x100n, back);
    assert.equal(new TextDecoder().decode(back), "world");
    assert.equal(driver.numFree, 8);
  });

  test("a buffer crossing two regions yields two host segments", () => {
    const { driver, queue, batch } = pair();
    driver.add([{ addr: BUF_B - 10n, len: 30 }], [], "x");
    driver.publish();
    queue.pop(batch);
    const segs = segmentsOf(queue, batch, 0);
    assert.deepEqual(
      segs.map((s) => [s.kind, s.addr, s.len, s.bytes.length]),
      [
        ["host", BUF_B - 10n, 10, 10],
        ["host", BUF_B, 20, 20],
      ],
    );
    assert.notEqual(segs[0]!.bytes.buffer, segs[1]!.bytes.buffer);
  });

  test("copy helpers span regions in both directions", async () => {
    const { memory, driver, queue, batch } = pair();
    const src = Uint8Array.from({ length: 64 }, (_, i) => i + 1);
    memory.writeSync(BUF_B - 32n, src);
    driver.add(
      [{ addr: BUF_B - 32n, len: 64 }],
      [
        { addr: BUF_B - 8n, len: 4 },
        { addr: BUF_A, len: 60 },
      ],
    );
    driver.publish();
    queue.pop(batch);
    const dst = new Uint8Array(64);
    assert.equal(await readChain(queue.segments(batch, 0), memory, dst), 64);
    assert.deepEqual(dst, src);
    const out = Uint8Array.from({ length: 64 }, (_, i) => 200 - i);
    assert.equal(await writeChain(queue.segments(batch, 0), memory, out), 64);
    const a = new Uint8Array(4);
    memory.readSync(BUF_B - 8n, a);
    assert.deepEqual(a, out.subarray(0, 4));
    const b = new Uint8Array(60);
    memory.readSync(BUF_A, b);
    assert.deepEqual(b, out.subarray(4));
    assert.equal(memory.remoteCalls, 0);
  });

  test("a translation miss is a remote segment the copy helpers serve through read/write", async () => {
    const { memory, driver, queue, batch } = pair();
    memory.writeSync(REMOTE, Uint8Array.of(9, 8, 7));
    driver.add([{ addr: REMOTE, len: 3 }], [{ addr: REMOTE + 0x10n, len: 2 }]);
    driver.publish();
    queue.pop(batch);
    const segs = segmentsOf(queue, batch, 0);
    assert.deepEqual(
      segs.map((s) => [s.kind, s.addr, s.len, s.writable]),
      [
        ["remote", REMOTE, 3, false],
        ["remote", REMOTE + 0x10n, 2, true],
      ],
    );
    const dst = new Uint8Array(3);
    await readChain(queue.segments(batch, 0), memory, dst);
    assert.deepEqual(dst, Uint8Array.of(9, 8, 7));
    await writeChain(queue.segments(batch, 0), memory, Uint8Array.of(1, 2));
    const back = new Uint8Array(2);
    memory.readSync(REMOTE + 0x10n, back);
    assert.deepEqual(back, Uint8Array.of(1, 2));
    assert.equal(memory.remoteCalls, 2);
  });

  test("several chains, one cursor each; readChain stops at the first writable segment", async () => {
    const { memory, driver, queue, batch } = pair();
    memory.writeSync(BUF_A, Uint8Array.of(1, 2, 3, 4, 5, 6));
    driver.add([{ addr: BUF_A, len: 2 }], [{ addr: BUF_A + 0x80n, len: 4 }]);
    driver.add(
      [
        { addr: BUF_A + 2n, len: 2 },
        { addr: BUF_A + 4n, len: 2 },
      ],
      [],
    );
    driver.publish();
    assert.equal(queue.pop(batch), 2);
    const c0 = queue.segments(batch, 0, new SegmentCursor());
    const c1 = queue.segments(batch, 1, new SegmentCursor());
    const a = new Uint8Array(6);
    const b = new Uint8Array(6);
    assert.equal(await readChain(c0, memory, a), 2, "stops before the writable segment");
    assert.equal(await readChain(c1, memory, b), 4);
    assert.deepEqual([...a.subarray(0, 2)], [1, 2]);
    assert.deepEqual([...b.subarray(0, 4)], [3, 4, 5, 6]);
    assert.throws(() => queue.segments(batch, 2), RangeError);
  });

  test("writeChain past the writable bytes is CHAIN_OVERRUN", async () => {
    const { driver, queue, batch } = pair();
    driver.add([], [{ addr: BUF_A, len: 2 }]);
    driver.publish();
    queue.pop(batch);
    await assert.rejects(writeChain(queue.segments(batch, 0), queue.memory, new Uint8Array(3)), (e) => isVirtqueueError(e) && e.code === "CHAIN_OVERRUN");
  });

  test("a device-writable buffer in read-only memory breaks the queue", () => {
    const { driver, queue, batch } = pair();
    driver.add([{ addr: READ_ONLY, len: 4 }], [{ addr: READ_ONLY + 8n, len: 4 }]);
    driver.publish();
    queue.pop(batch);
    const c = queue.segments(batch, 0);
    assert.equal(c.next(), true);
    assert.throws(
      () => c.next(),
      (e) => isVirtqueueError(e) && e.code === "READ_ONLY_BUFFER",
    );
    assert.equal(queue.brokenBy?.code, "READ_ONLY_BUFFER");
    assert.throws(
      () => queue.pop(batch),
      (e) => isVirtqueueError(e) && e.code === "BROKEN",
    );
  });

  test("batches: pop respects max and capacity, pushUsed returns every head in order", () => {
    const { driver, queue } = pair({ size: 16 });
    const heads = [];
    for (let i = 0; i < 10; i++) heads.push(driver.add([{ addr: BUF_A + BigInt(i * 64), len: 64 }], [], `c${i}`));
    driver.publish();
    const small = new ChainBatch(4);
    assert.equal(queue.pop(small), 4);
    assert.equal(queue.pop(small, 2), 2);
    const big = new ChainBatch(16);
    assert.equal(queue.pop(big), 4);
    queue.pushUsed(big, [1, 2, 3, 4]);
    assert.equal(queue.pop(big), 0);
    assert.equal(big.count, 0, "every pop overwrites the batch");
    assert.equal(queue.publishUsed(), true);
    const got = driver.collectUsed();
    assert.deepEqual(
      got.map((u) => u.token),
      ["c6", "c7", "c8", "c9"],
    );
    assert.deepEqual(
      got.map((u) => u.len),
      [1, 2, 3, 4],
    );
  });

  test("u16 indices wrap: 70000 chains through a queue of 4", () => {
    const { driver, queue, batch } = pair({ size: 4 });
    let collected = 0;
    for (let round = 0; round < 70000 / 4; round++) {
      for (let k = 0; k < 4; k++) driver.add([{ addr: BUF_A + BigInt(k * 8), len: 8 }], [], `${round}.${k}`);
      driver.publish();
      assert.equal(queue.pop(batch), 4);
      queue.pushUsed(batch);
      queue.publishUsed();
      const used = driver.collectUsed();
      assert.equal(used.length, 4);
      assert.equal(used[3]!.token, `${round}.3`);
      collected += used.length;
    }
    assert.equal(collected, 70000);
    assert.equal(queue.base, 70000 & 0xffff);
    assert.equal(driver.lastUsedIndex, 70000 & 0xffff);
  });

  test("stop returns the next avail index; restart at that base continues where it left", () => {
    const { memory, addresses, driver, queue, batch } = pair();
    for (let i = 0; i < 3; i++) driver.add([{ addr: BUF_A + BigInt(i), len: 1 }], [], `b${i}`);
    driver.publish();
    assert.equal(queue.pop(batch, 2), 2);
    queue.pushUsed(batch);
    assert.equal(queue.stop(), 2);
    assert.throws(
      () => queue.pop(batch),
      (e) => isVirtqueueError(e) && e.code === "NOT_STARTED",
    );
    // GET_VRING_BASE published the pending used elements.
    assert.deepEqual(
      driver.collectUsed().map((u) => u.token),
      ["b0", "b1"],
    );
    const q2 = new SplitQueue({ size: 8, memory, addresses });
    q2.setBase(2);
    q2.start();
    assert.equal(q2.usedIndex, 2, "used.idx is read from the ring at start");
    assert.equal(q2.pop(batch), 1);
    q2.pushUsed(batch);
    q2.publishUsed();
    assert.deepEqual(
      driver.collectUsed().map((u) => u.token),
      ["b2"],
    );
    assert.throws(() => q2.setBase(1), RangeError);
  });

  test("start at a base near the u16 wrap", () => {
    const size = 8;
    const memory = makeMemory(size);
    const addresses = ringAddresses(size);
    const view = new DataView(memory.regions[0]!.bytes.buffer);
    view.setUint16(Number(addresses.avail) + 2, 65534, true);
    view.setUint16(Number(addresses.used) + 2, 65534, true);
    const driver = new SplitDriver({ size, memory, addresses, reset: false });
    const queue = new SplitQueue({ size, memory, addresses });
    queue.start(65534);
    for (let i = 0; i < 5; i++) driver.add([{ addr: BUF_A, len: 4 }], []);
    driver.publish();
    const batch = new ChainBatch(size);
    assert.equal(queue.pop(batch), 5);
    assert.equal(queue.base, 3);
    queue.pushUsed(batch);
    queue.publishUsed();
    assert.equal(driver.collectUsed().length, 5);
    assert.equal(queue.stop(), 3);
  });

  test("every power-of-two size 1..32768 round-trips a full ring", () => {
    for (let size = 1; size <= 32768; size *= 2) {
      const { driver, queue } = pair({ size });
      const batch = new ChainBatch(size);
      for (let i = 0; i < size; i++) driver.add([{ addr: BUF_A + BigInt(i % 1024), len: 1 }], []);
      assert.throws(
        () => driver.add([{ addr: BUF_A, len: 1 }], []),
        (e) => isVirtqueueError(e) && e.code === "RING_FULL",
      );
      driver.publish();
      assert.equal(queue.pop(batch), size);
      queue.pushUsed(batch);
      queue.publishUsed();
      assert.equal(driver.collectUsed().length, size);
      assert.equal(driver.numFree, size);
    }
  });

  test("indirect chains through the driver, table across two regions", () => {
    const { memory, driver, queue, batch } = pair({ indirect: true });
    memory.writeSync(BUF_A, Uint8Array.of(1, 2, 3, 4));
    const table = BUF_B - 24n; // 3 entries = 48 bytes, 24 in each region
    driver.addIndirect(
      [{ addr: BUF_A, len: 4 }],
      [
        { addr: BUF_A + 0x40n, len: 8 },
        { addr: BUF_B + 0x40n, len: 8 },
      ],
      table,
      "ind",
    );
    driver.add([{ addr: BUF_A, len: 1 }], [], "direct");
    driver.publish();
    assert.equal(queue.pop(batch), 2);
    assert.equal(batch.descriptorCount(0), 3);
    assert.equal(batch.readableBytes[0], 4);
    assert.equal(batch.writableBytes[0], 16);
    assert.deepEqual(
      segmentsOf(queue, batch, 0).map((s) => [s.addr, s.len, s.writable]),
      [
        [BUF_A, 4, false],
        [BUF_A + 0x40n, 8, true],
        [BUF_B + 0x40n, 8, true],
      ],
    );
    queue.pushUsed(batch, [16, 0]);
    queue.publishUsed();
    assert.deepEqual(
      driver.collectUsed().map((u) => [u.token, u.len]),
      [
        ["ind", 16],
        ["direct", 0],
      ],
    );
    assert.equal(driver.numFree, 8);
  });

  test("driver rejects what a device could not accept", () => {
    const { driver } = pair();
    const bad = (e: unknown) => isVirtqueueError(e) && e.code === "BAD_BUFFER";
    assert.throws(() => driver.add([], []), bad);
    assert.throws(() => driver.add([{ addr: BUF_A, len: 0 }], []), bad);
    assert.throws(() => driver.add([{ addr: (1n << 64n) - 2n, len: 4 }], []), bad);
    assert.throws(
      () => driver.addIndirect([{ addr: BUF_A, len: 1 }], [], BUF_A),
      (e) => isVirtqueueError(e) && e.code === "INDIRECT_NOT_NEGOTIATED",
    );
  });

  test("driver rejects used ids that are not in flight", () => {
    const { memory, addresses, driver } = pair();
    const dv = new DataView(memory.regions[0]!.bytes.buffer);
    const used = Number(addresses.used);
    dv.setUint32(used + 4, 3, true); // id 3 was never added
    dv.setUint16(used + 2, 1, true);
    assert.throws(
      () => driver.collectUsed(),
      (e) => isVirtqueueError(e) && e.code === "BAD_USED_ID",
    );
    dv.setUint16(used + 2, 100, true);
    assert.throws(
      () => driver.pendingUsed(),
      (e) => isVirtqueueError(e) && e.code === "USED_OVERRUN",
    );
  });

  test("remap after a memory change keeps the queue running", () => {
    const { memory, driver, queue, batch } = pair();
    driver.add([{ addr: BUF_A, len: 1 }], []);
    driver.publish();
    queue.remap(memory);
    assert.equal(queue.pop(batch), 1);
  });

  test("user-space ring addresses go through translateUser", () => {
    const size = 8;
    const memory = makeMemory(size);
    const g = ringAddresses(size);
    const off = 0x7f00_0000_0000n;
    const driver = new SplitDriver({ size, memory, addresses: g });
    const queue = new SplitQueue({ size, memory, addresses: { desc: g.desc + off, avail: g.avail + off, used: g.used + off }, addressSpace: "user" });
    queue.start();
    driver.add([{ addr: BUF_A, len: 2 }], []);
    driver.publish();
    const batch = new ChainBatch(size);
    assert.equal(queue.pop(batch), 1);
  });
});
