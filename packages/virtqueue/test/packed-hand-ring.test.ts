/**
 * Packed rings byte by byte (VIRTIO 1.2 §2.8; docs/virtqueue.md#packed-rings): layout, vring base,
 * the event rule with wrap counters, the device against hand-laid descriptors, and the bytes the
 * driver and the device write (descriptors, used descriptors, event suppression structures).
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  ChainBatch,
  FRESH_PACKED_VRING_BASE,
  PackedDescFlag,
  PackedQueue,
  RingEventFlag,
  RingFeatureBit,
  checkPackedRingAlignment,
  isValidPackedQueueSize,
  isVirtqueueError,
  packedInFlight,
  packedLayout,
  packedNeedEvent,
  packedVringBaseNum,
  toPackedVringBase,
} from "../src/index.js";
import { PackedDriver } from "../src/driver/index.js";
import { VirtioFeature } from "@vhostkit/wire";
import { AVAIL_0, AVAIL_1, USED_1, getPacked, packedAddresses, putPacked } from "./helpers/packed-ring.js";
import { BUF_A, BUF_B, makeMemory, ringView, segmentsOf } from "./helpers/ring-fixture.js";

const { NEXT, WRITE, INDIRECT } = PackedDescFlag;

describe("packed layout", () => {
  test("sizes: 16 bytes a descriptor, 4-byte event structures; any size 1..32768", () => {
    assert.deepEqual(packedLayout(5), { size: 5, descBytes: 80, driverEventBytes: 4, deviceEventBytes: 4 });
    assert.equal(packedLayout(32768).descBytes, 16 * 32768);
    for (const ok of [1, 3, 5, 100, 1000, 32767, 32768]) assert.equal(isValidPackedQueueSize(ok), true, String(ok));
    for (const bad of [0, 32769, 65536, -1, 1.5, Number.NaN]) {
      assert.equal(isValidPackedQueueSize(bad), false, String(bad));
      assert.throws(
        () => packedLayout(bad),
        (e) => isVirtqueueError(e) && e.code === "BAD_QUEUE_SIZE",
      );
    }
  });

  test("feature bit 34 selects the layout (the wire's VirtioFeature.RING_PACKED)", () => {
    assert.equal(1n << BigInt(RingFeatureBit.RING_PACKED), VirtioFeature.RING_PACKED);
  });

  test("alignment: descriptor ring 16, driver and device areas 4", () => {
    const ok = { desc: 0x1000n, avail: 0x2004n, used: 0x3008n };
    checkPackedRingAlignment(ok);
    for (const bad of [
      { ...ok, desc: 0x1008n },
      { ...ok, avail: 0x2002n },
      { ...ok, used: 0x3001n },
    ]) {
      assert.throws(
        () => checkPackedRingAlignment(bad),
        (e) => isVirtqueueError(e) && e.code === "MISALIGNED_RING",
      );
      assert.throws(
        () => new PackedQueue({ size: 8, memory: makeMemory(), addresses: bad }),
        (e) => isVirtqueueError(e) && e.code === "MISALIGNED_RING",
      );
    }
  });

  test("vring base: bits 0-14 avail offset, 15 avail wrap, 16-30 used offset, 31 used wrap", () => {
    assert.equal(FRESH_PACKED_VRING_BASE, 0x8000_8000);
    assert.deepEqual(toPackedVringBase(0x8003_8005, 8), { availIdx: 5, availWrap: true, usedIdx: 3, usedWrap: true });
    assert.equal(packedVringBaseNum({ availIdx: 5, availWrap: true, usedIdx: 3, usedWrap: true }), 0x8003_8005);
    assert.equal(packedVringBaseNum({ availIdx: 1, availWrap: false, usedIdx: 6, usedWrap: true }), 0x8006_0001);
    assert.equal(packedInFlight(toPackedVringBase(0x8003_8005, 8), 8), 2);
    // Avail one lap ahead of used: offset 1 in lap 0 is 3 descriptors past offset 6 in lap 1 (size 8).
    assert.equal(packedInFlight(toPackedVringBase(0x8006_0001, 8), 8), 3);
    assert.equal(packedInFlight(toPackedVringBase(0x8002_0002, 8), 8), 8, "the whole ring held");
    for (const bad of [0x8000_8008, 0x8008_8000, 0x8005_8003, 0x8003_0005, -1, 2 ** 32, 1.5]) {
      assert.throws(() => toPackedVringBase(bad, 8), RangeError, `0x${bad.toString(16)}`);
    }
  });

  test("event rule with wrap counters (Linux virtqueue_kick_prepare_packed)", () => {
    // Size 8: descriptors 6, 7 (lap 1) and 0, 1 (lap 0) were just made available: old 6 -> new 2.
    const win = (off: number, wrap: number) => packedNeedEvent(off | (wrap << 15), false, 8, 2, 2 - 4);
    assert.equal(win(6, 1), true);
    assert.equal(win(7, 1), true);
    assert.equal(win(0, 0), true);
    assert.equal(win(1, 0), true);
    assert.equal(win(2, 0), false, "the next one, not yet");
    assert.equal(win(5, 1), false, "before the window");
    assert.equal(win(5, 0), false, "a lap later");
    // No wrap: 3 -> 5 in lap 1.
    assert.equal(packedNeedEvent(0x8003, true, 8, 5, 3), true);
    assert.equal(packedNeedEvent(0x8005, true, 8, 5, 3), false);
    assert.equal(packedNeedEvent(0x0004, true, 8, 5, 3), false, "offset 4 of the other lap is -4");
  });
});

describe("packed device against hand-laid rings", () => {
  function setup(size: number, opts: { eventIdx?: boolean; indirect?: boolean } = {}) {
    const memory = makeMemory(8);
    const a = packedAddresses(size);
    const dv = ringView(memory);
    const queue = new PackedQueue({ size, memory, addresses: a, ...opts });
    queue.start();
    return { memory, dv, queue, desc: Number(a.desc), drv: Number(a.avail), dev: Number(a.used), batch: new ChainBatch(size) };
  }

  test("two lists in a ring of 5: buffer IDs, segments, used descriptors written out of order", () => {
    const { dv, queue, desc, batch } = setup(5);
    putPacked(dv, desc, 0, BUF_A, 100, 0, AVAIL_1 | NEXT);
    putPacked(dv, desc, 1, BUF_A + 0x1000n, 200, 0, AVAIL_1 | NEXT | WRITE);
    putPacked(dv, desc, 2, BUF_B, 300, 3, AVAIL_1 | WRITE); // the ID is the last descriptor's
    putPacked(dv, desc, 3, BUF_A + 0x2000n, 50, 1, AVAIL_1);
    assert.equal(queue.pop(batch), 2);
    assert.deepEqual([batch.head(0), batch.head(1)], [3, 1]);
    assert.deepEqual([batch.readableBytes[0], batch.writableBytes[0], batch.readableBytes[1], batch.writableBytes[1]], [100, 500, 50, 0]);
    assert.deepEqual(
      segmentsOf(queue, batch, 0).map(({ kind, addr, len, writable }) => ({ kind, addr, len, writable })),
      [
        { kind: "host", addr: BUF_A, len: 100, writable: false },
        { kind: "host", addr: BUF_A + 0x1000n, len: 200, writable: true },
        { kind: "host", addr: BUF_B, len: 300, writable: true },
      ],
    );
    assert.equal(queue.pop(batch), 0, "descriptor 4 is still zero: not available");
    queue.addUsed(1, 0);
    queue.addUsed(3, 123);
    // id and len written, flags not yet: the driver sees nothing.
    assert.deepEqual(getPacked(dv, desc, 0), { addr: BUF_A, len: 0, id: 1, flags: AVAIL_1 | NEXT });
    assert.deepEqual(getPacked(dv, desc, 1), { addr: BUF_A + 0x1000n, len: 123, id: 3, flags: AVAIL_1 | NEXT | WRITE });
    assert.equal(queue.publishUsed(), true, "first decision, driver events enabled");
    assert.equal(getPacked(dv, desc, 0).flags, USED_1, "len 0: no WRITE");
    assert.equal(getPacked(dv, desc, 1).flags, USED_1 | WRITE);
    assert.deepEqual(getPacked(dv, desc, 2), { addr: BUF_B, len: 300, id: 3, flags: AVAIL_1 | WRITE }, "skipped, untouched");
    assert.deepEqual(queue.ringBase, { availIdx: 4, availWrap: true, usedIdx: 4, usedWrap: true });
    assert.equal(queue.stop(), 0x8004_8004);
  });

  test("a list across the ring end: wrap counters flip for both sides", () => {
    const { dv, queue, desc, batch } = setup(3);
    queue.stop();
    queue.start(0x8002_8002);
    // Offsets 0 and 1 were used in lap 1 already (a ring that ran; PackedDriver lays it out so).
    putPacked(dv, desc, 0, 0n, 0, 0, USED_1);
    putPacked(dv, desc, 1, 0n, 0, 0, USED_1);
    putPacked(dv, desc, 2, BUF_A, 8, 0, AVAIL_1 | NEXT);
    putPacked(dv, desc, 0, BUF_A + 8n, 8, 2, AVAIL_0 | WRITE); // next lap: wrap counter 0
    assert.equal(queue.pop(batch), 1);
    assert.equal(batch.head(0), 2);
    assert.equal(batch.descriptorCount(0), 2);
    assert.deepEqual(queue.ringBase, { availIdx: 1, availWrap: false, usedIdx: 2, usedWrap: true });
    queue.addUsed(2, 8);
    queue.publishUsed();
    assert.deepEqual(getPacked(dv, desc, 2), { addr: BUF_A, len: 8, id: 2, flags: USED_1 | WRITE });
    assert.equal(queue.stop(), 0x0001_0001);
    // Next lap: available means AVAIL 0, USED 1; used means both 0.
    queue.start();
    putPacked(dv, desc, 1, BUF_A, 4, 0, AVAIL_0);
    assert.equal(queue.pop(batch), 1);
    queue.addUsed(0, 0);
    queue.publishUsed();
    assert.equal(getPacked(dv, desc, 1).flags, 0);
    assert.equal(queue.base, 0x0002_0002);
  });

  test("indirect: the table's entries in order; only WRITE counts there; one ring descriptor", () => {
    const { memory, dv, queue, desc, batch } = setup(4, { indirect: true });
    const table = new DataView(memory.regions[1]!.bytes.buffer);
    putPacked(table, 0x4000, 0, BUF_A, 16, 77, NEXT); // reserved bits: ignored
    putPacked(table, 0x4000, 1, BUF_A + 0x100n, 32, 0, WRITE | INDIRECT);
    putPacked(table, 0x4000, 2, BUF_B, 8, 0, WRITE);
    putPacked(dv, desc, 0, BUF_A + 0x4000n, 48, 2, AVAIL_1 | INDIRECT | WRITE);
    assert.equal(queue.pop(batch), 1);
    assert.equal(batch.head(0), 2);
    assert.deepEqual(
      segmentsOf(queue, batch, 0).map((s) => [s.addr, s.len, s.writable]),
      [
        [BUF_A, 16, false],
        [BUF_A + 0x100n, 32, true],
        [BUF_B, 8, true],
      ],
    );
    queue.addUsed(2, 40);
    queue.publishUsed();
    assert.equal(queue.base, 0x8001_8001, "an indirect list takes one ring descriptor");
  });

  test("pushUsed: a batch's used descriptors appear together at publishUsed", () => {
    const { dv, queue, desc, batch } = setup(4);
    for (let i = 0; i < 3; i++) putPacked(dv, desc, i, BUF_A, 4, 2 - i, AVAIL_1 | WRITE);
    assert.equal(queue.pop(batch), 3);
    queue.pushUsed(batch, [1, 2, 0]);
    const flags = () => [0, 1, 2].map((i) => getPacked(dv, desc, i).flags);
    assert.deepEqual(flags(), [AVAIL_1 | WRITE, AVAIL_1 | WRITE, AVAIL_1 | WRITE], "nothing visible before publishUsed");
    assert.deepEqual(
      [0, 1, 2].map((i) => [getPacked(dv, desc, i).id, getPacked(dv, desc, i).len]),
      [
        [2, 1],
        [1, 2],
        [0, 0],
      ],
    );
    queue.publishUsed();
    assert.deepEqual(flags(), [USED_1 | WRITE, USED_1 | WRITE, USED_1]);
  });
});

describe("packed event suppression", () => {
  function setup(eventIdx: boolean) {
    const memory = makeMemory(8);
    const a = packedAddresses(8);
    const dv = ringView(memory);
    const queue = new PackedQueue({ size: 8, memory, addresses: a, eventIdx });
    queue.start();
    const driver = new PackedDriver({ size: 8, memory, addresses: a, eventIdx, reset: false });
    return { dv, queue, driver, drv: Number(a.avail), dev: Number(a.used), batch: new ChainBatch(8) };
  }
  const one = { addr: BUF_A, len: 4 };

  test("device: DISABLE, ENABLE, DESC with and without EVENT_IDX decide the interrupt", () => {
    for (const eventIdx of [false, true]) {
      const { dv, queue, driver, drv, batch } = setup(eventIdx);
      const round = (flags: number, offWrap = 0) => {
        dv.setUint16(drv, offWrap, true);
        dv.setUint16(drv + 2, flags, true);
        driver.add([one], []);
        driver.publish();
        queue.pop(batch);
        queue.pushUsed(batch);
        return queue.publishUsed();
      };
      assert.equal(round(RingEventFlag.DISABLE), false, "disabled, even on the first decision");
      assert.equal(round(RingEventFlag.ENABLE), true);
      assert.equal(round(3), true, "reserved value: notify");
      // Used so far: offsets 0..2; the next used descriptor goes to offset 3 (lap 1).
      assert.equal(round(RingEventFlag.DESC, 0x8003), true, "event at the descriptor just used");
      assert.equal(round(RingEventFlag.DESC, 0x8003), !eventIdx, "event behind: only EVENT_IDX honours it");
      assert.equal(round(RingEventFlag.DESC, 0x8006), !eventIdx, "event ahead");
      assert.equal(round(RingEventFlag.DESC, 0x8006), true, "reached");
    }
  });

  test("device writes its event suppression structure: off_wrap first, then flags", () => {
    for (const eventIdx of [false, true]) {
      const { dv, queue, driver, dev, batch } = setup(eventIdx);
      queue.disableNotification();
      assert.equal(dv.getUint16(dev + 2, true), RingEventFlag.DISABLE);
      assert.equal(queue.enableNotification(), false);
      assert.deepEqual([dv.getUint16(dev, true), dv.getUint16(dev + 2, true)], eventIdx ? [0x8000, RingEventFlag.DESC] : [0, RingEventFlag.ENABLE]);
      driver.add([one], []);
      assert.equal(driver.publish(), true, "kick: event at the offset just made available / enabled");
      assert.equal(queue.enableNotification(), true, "re-check sees the list");
      queue.pop(batch);
      queue.enableNotification();
      if (eventIdx) assert.equal(dv.getUint16(dev, true), 0x8001);
      driver.add([one], []);
      driver.add([one], []);
      assert.equal(driver.publish(), true);
      queue.disableNotification();
      driver.add([one], []);
      assert.equal(driver.publish(), false, "device disabled kicks");
    }
  });

  test("driver writes its event suppression structure; EVENT_IDX event at the used position", () => {
    const { dv, queue, driver, drv, batch } = setup(true);
    driver.disableInterrupts();
    assert.equal(dv.getUint16(drv + 2, true), RingEventFlag.DISABLE);
    driver.add([one], []);
    driver.add([one], []);
    driver.publish();
    queue.pop(batch);
    queue.pushUsed(batch);
    assert.equal(queue.publishUsed(), false);
    assert.equal(driver.enableInterrupts(), true, "two used descriptors already there");
    assert.deepEqual([dv.getUint16(drv, true), dv.getUint16(drv + 2, true)], [0x8000, RingEventFlag.DESC]);
    assert.equal(driver.collectUsed().length, 2);
    assert.equal(driver.enableInterrupts(), false);
    assert.equal(dv.getUint16(drv, true), 0x8002);
  });
});

describe("packed driver bytes", () => {
  test("add writes every descriptor but the head's flags; publish flips the head last", () => {
    const memory = makeMemory(8);
    const a = packedAddresses(4);
    const dv = ringView(memory);
    const driver = new PackedDriver<string>({ size: 4, memory, addresses: a });
    const id = driver.add(
      [{ addr: BUF_A, len: 10 }],
      [
        { addr: BUF_B, len: 20 },
        { addr: BUF_B + 0x40n, len: 30 },
      ],
      "t",
    );
    assert.equal(id, 0);
    assert.deepEqual(getPacked(dv, 0, 0), { addr: BUF_A, len: 10, id: 0, flags: 0 }, "head hidden");
    assert.deepEqual(getPacked(dv, 0, 1), { addr: BUF_B, len: 20, id: 0, flags: AVAIL_1 | NEXT | WRITE });
    assert.deepEqual(getPacked(dv, 0, 2), { addr: BUF_B + 0x40n, len: 30, id: 0, flags: AVAIL_1 | WRITE });
    assert.equal(driver.publish(), true);
    assert.equal(getPacked(dv, 0, 0).flags, AVAIL_1 | NEXT);
    assert.equal(driver.numFree, 1);
    // A second list wraps: offset 3 in lap 1, offset 0 in lap 0 is not free yet (RING_FULL).
    assert.throws(
      () =>
        driver.add(
          [
            { addr: BUF_A, len: 1 },
            { addr: BUF_A, len: 1 },
          ],
          [],
        ),
      (e) => isVirtqueueError(e) && e.code === "RING_FULL",
    );
    // The device uses the list: one used descriptor at offset 0, WRITE + len.
    putPacked(dv, 0, 0, 0n, 25, 0, USED_1 | WRITE);
    assert.deepEqual(driver.collectUsed(), [{ id: 0, len: 25, token: "t" }]);
    assert.equal(driver.numFree, 4);
    assert.equal(driver.lastUsedIndex, 0x8003);
    const id2 = driver.add(
      [
        { addr: BUF_A, len: 1 },
        { addr: BUF_A + 1n, len: 1 },
      ],
      [],
    );
    driver.publish();
    assert.equal(getPacked(dv, 0, 3).flags, AVAIL_1 | NEXT, "head at offset 3, lap 1");
    assert.equal(getPacked(dv, 0, 0).flags, AVAIL_0, "second descriptor in lap 0");
    assert.equal(driver.availIndex, 0x0001);
    // A used descriptor without WRITE reports len 0 (its len is reserved).
    putPacked(dv, 0, 3, 0n, 999, id2, USED_1);
    assert.deepEqual(driver.collectUsed(), [{ id: id2, len: 0, token: undefined }]);
    assert.equal(driver.lastUsedIndex, 0x0001);
  });

  test("indirect: one ring descriptor, a table of entries carrying only WRITE", () => {
    const memory = makeMemory(8);
    const dv = ringView(memory);
    const driver = new PackedDriver({ size: 4, memory, addresses: packedAddresses(4), indirect: true });
    driver.addIndirect([{ addr: BUF_A, len: 8 }], [{ addr: BUF_B, len: 16 }], BUF_A + 0x4000n);
    driver.publish();
    assert.deepEqual(getPacked(dv, 0, 0), { addr: BUF_A + 0x4000n, len: 32, id: 0, flags: AVAIL_1 | INDIRECT });
    const table = new DataView(memory.regions[1]!.bytes.buffer);
    assert.deepEqual(getPacked(table, 0x4000, 0), { addr: BUF_A, len: 8, id: 0, flags: 0 });
    assert.deepEqual(getPacked(table, 0x4000, 1), { addr: BUF_B, len: 16, id: 0, flags: WRITE });
    assert.equal(driver.numFree, 3);
  });

  test("reset at a start position: used in this lap before it, in the previous lap from it on", () => {
    const memory = makeMemory(8);
    const dv = ringView(memory);
    new PackedDriver({ size: 5, memory, addresses: packedAddresses(5), start: 0x0003 });
    assert.deepEqual(
      [0, 1, 2, 3, 4].map((i) => getPacked(dv, 0, i).flags),
      [0, 0, 0, USED_1, USED_1],
    );
    new PackedDriver({ size: 5, memory, addresses: packedAddresses(5), start: 0x8002 });
    assert.deepEqual(
      [0, 1, 2, 3, 4].map((i) => getPacked(dv, 0, i).flags),
      [USED_1, USED_1, 0, 0, 0],
    );
    assert.throws(() => new PackedDriver({ size: 5, memory, addresses: packedAddresses(5), start: 0x8005 }), RangeError);
  });
});
