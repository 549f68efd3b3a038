/**
 * The device side against rings laid out byte by byte per docs/virtqueue.md#ring-layout (no driver code), and
 * the notification rules of docs/virtqueue.md#notification-suppression (EVENT_IDX `vring_need_event`, NO_INTERRUPT / NO_NOTIFY).
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ChainBatch, DescFlag, SplitQueue, checkRingAlignment, isValidQueueSize, isVirtqueueError, needEvent, splitLayout, writeChain } from "../src/index.js";
import { SplitDriver } from "../src/driver/index.js";
import { BUF_A, BUF_B, REMOTE, RING_BASE, makeMemory, pair, putDesc, ringAddresses, ringView, segmentsOf } from "./helpers/ring-fixture.js";
import { ArrayGuestMemory } from "../src/testing/index.js";
import type { GuestAddress, GuestMemory } from "@vhostkit/regions";

const { NEXT, WRITE, INDIRECT } = DescFlag;

describe("layout", () => {
  test("sizes per docs/virtqueue.md#ring-layout", () => {
    assert.deepEqual(splitLayout(256), { size: 256, descBytes: 4096, availBytes: 518, usedBytes: 2054 });
    assert.deepEqual(splitLayout(1), { size: 1, descBytes: 16, availBytes: 8, usedBytes: 14 });
    assert.equal(splitLayout(32768).usedBytes, 6 + 8 * 32768);
  });
  test("queue sizes: powers of two 1..32768 only", () => {
    for (const bad of [0, 3, 6, 65536, 32769, -2, 1.5, Number.NaN]) {
      assert.equal(isValidQueueSize(bad), false, String(bad));
      assert.throws(
        () => splitLayout(bad),
        (e) => isVirtqueueError(e) && e.code === "BAD_QUEUE_SIZE",
      );
    }
  });
  test("ring alignment: desc 16, avail 2, used 4", () => {
    const ok = { desc: 0x1000n, avail: 0x2002n, used: 0x3004n };
    checkRingAlignment(ok);
    for (const bad of [
      { ...ok, desc: 0x1008n },
      { ...ok, avail: 0x2001n },
      { ...ok, used: 0x3002n },
    ]) {
      assert.throws(
        () => checkRingAlignment(bad),
        (e) => isVirtqueueError(e) && e.code === "MISALIGNED_RING",
      );
      assert.throws(
        () => new SplitQueue({ size: 8, memory: makeMemory(), addresses: bad }),
        (e) => isVirtqueueError(e) && e.code === "MISALIGNED_RING",
      );
    }
  });
  test("rings outside memory or across regions are RING_UNMAPPED at start", () => {
    const memory = makeMemory(8);
    const q = new SplitQueue({ size: 8, memory, addresses: { desc: 0x10000000n, avail: 0x2000n, used: 0x3000n } });
    assert.throws(
      () => q.start(),
      (e) => isVirtqueueError(e) && e.code === "RING_UNMAPPED",
    );
    const q2 = new SplitQueue({ size: 8, memory, addresses: { desc: BUF_B - 64n, avail: 0x2000n, used: 0x3000n } });
    assert.throws(
      () => q2.start(),
      (e) => isVirtqueueError(e) && e.code === "RING_UNMAPPED",
    );
  });
});

describe("hand-laid ring", () => {
  const size = 8;
  function setup(opts: { eventIdx?: boolean; indirect?: boolean } = {}) {
    const memory = makeMemory(size);
    const a = ringAddresses(size);
    const dv = ringView(memory);
    const queue = new SplitQueue({ size, memory, addresses: a, ...opts });
    queue.start(0);
    return { memory, dv, queue, desc: Number(a.desc), avail: Number(a.avail), used: Number(a.used), batch: new ChainBatch(size) };
  }

  test("two chains laid by hand: heads, segments, used ring bytes", () => {
    const { dv, queue, desc, avail, used, batch } = setup();
    putDesc(dv, desc, 5, BUF_A, 100, NEXT, 2);
    putDesc(dv, desc, 2, BUF_A + 0x1000n, 200, NEXT | WRITE, 7);
    putDesc(dv, desc, 7, BUF_B, 300, WRITE, 0);
    putDesc(dv, desc, 0, BUF_A + 0x2000n, 50, 0, 0);
    dv.setUint16(avail + 4 + 2 * 0, 5, true);
    dv.setUint16(avail + 4 + 2 * 1, 0, true);
    dv.setUint16(avail + 2, 2, true);
    assert.equal(queue.pop(batch), 2);
    assert.deepEqual([batch.head(0), batch.head(1)], [5, 0]);
    assert.deepEqual(
      segmentsOf(queue, batch, 0).map((s) => [s.addr, s.len, s.writable]),
      [
        [BUF_A, 100, false],
        [BUF_A + 0x1000n, 200, true],
        [BUF_B, 300, true],
      ],
    );
    assert.equal(batch.readableBytes[0], 100);
    assert.equal(batch.writableBytes[0], 500);
    queue.addUsed(5, 500);
    queue.addUsed(0, 0);
    assert.equal(dv.getUint16(used + 2, true), 0, "used.idx unchanged before publish");
    queue.publishUsed();
    assert.equal(dv.getUint16(used + 2, true), 2);
    assert.deepEqual([dv.getUint32(used + 4, true), dv.getUint32(used + 8, true)], [5, 500]);
    assert.deepEqual([dv.getUint32(used + 12, true), dv.getUint32(used + 16, true)], [0, 0]);
  });

  test("the batch is a snapshot: rewriting a descriptor after pop changes nothing", () => {
    const { dv, queue, desc, avail, batch } = setup();
    putDesc(dv, desc, 0, BUF_A, 16, 0, 0);
    dv.setUint16(avail + 4, 0, true);
    dv.setUint16(avail + 2, 1, true);
    queue.pop(batch);
    putDesc(dv, desc, 0, 0xdead0000n, 0, NEXT, 99);
    assert.deepEqual(
      segmentsOf(queue, batch, 0).map((s) => [s.addr, s.len]),
      [[BUF_A, 16]],
    );
  });

  test("indirect by hand: direct descriptors before the indirect one, table order via next", () => {
    const { dv, memory, queue, desc, avail, batch } = setup({ indirect: true });
    const table = new DataView(memory.regions[1]!.bytes.buffer);
    const t = 0x4000; // BUF_A + 0x4000
    // entries in table order 0 -> 2 -> 1
    putDesc(table, t, 0, BUF_A + 0x10n, 4, NEXT, 2);
    putDesc(table, t, 2, BUF_A + 0x20n, 8, NEXT | WRITE, 1);
    putDesc(table, t, 1, BUF_A + 0x30n, 12, WRITE, 0);
    putDesc(dv, desc, 3, BUF_A, 2, NEXT, 4);
    putDesc(dv, desc, 4, BUF_A + BigInt(t), 48, INDIRECT | WRITE, 0); // WRITE on the pointer is ignored
    dv.setUint16(avail + 4, 3, true);
    dv.setUint16(avail + 2, 1, true);
    assert.equal(queue.pop(batch), 1);
    assert.deepEqual(
      segmentsOf(queue, batch, 0).map((s) => [s.addr, s.len, s.writable]),
      [
        [BUF_A, 2, false],
        [BUF_A + 0x10n, 4, false],
        [BUF_A + 0x20n, 8, true],
        [BUF_A + 0x30n, 12, true],
      ],
    );
  });
});

describe("notification suppression (docs/virtqueue.md#notification-suppression)", () => {
  test("vring_need_event truth table and wrap", () => {
    assert.equal(needEvent(0, 1, 0), true);
    assert.equal(needEvent(1, 1, 0), false);
    assert.equal(needEvent(4, 8, 3), true);
    assert.equal(needEvent(2, 8, 3), false);
    assert.equal(needEvent(7, 8, 7), true);
    assert.equal(needEvent(65535, 1, 65534), true);
    assert.equal(needEvent(0, 2, 65535), true);
    assert.equal(needEvent(65533, 1, 65534), false);
    // Exhaustive against the spec formula over a window of u16 values.
    for (let o = 65500; o < 65600; o += 7) {
      for (let d = 0; d < 20; d++) {
        for (let e = o - 5; e < o + 25; e++) {
          const old = o & 0xffff;
          const nw = (o + d) & 0xffff;
          const ev = e & 0xffff;
          const inWindow = d > 0 && ((ev - old) & 0xffff) < d;
          assert.equal(needEvent(ev, nw, old), inWindow, `ev ${ev} new ${nw} old ${old}`);
        }
      }
    }
  });

  test("without EVENT_IDX: NO_INTERRUPT suppresses device notifications, NO_NOTIFY suppresses kicks", () => {
    const { driver, queue, batch } = pair();
    driver.add([{ addr: BUF_A, len: 1 }], []);
    assert.equal(driver.publish(), true);
    queue.disableNotification();
    driver.add([{ addr: BUF_A, len: 1 }], []);
    assert.equal(driver.publish(), false, "NO_NOTIFY set");
    assert.equal(queue.enableNotification(), true, "re-check sees pending chains");
    driver.add([{ addr: BUF_A, len: 1 }], []);
    assert.equal(driver.publish(), true);
    assert.equal(queue.pop(batch), 3);
    driver.disableInterrupts();
    queue.addUsed(batch.head(0), 0);
    assert.equal(queue.publishUsed(), false, "NO_INTERRUPT set");
    assert.equal(driver.enableInterrupts(), true);
    queue.addUsed(batch.head(1), 0);
    assert.equal(queue.publishUsed(), true);
    assert.equal(queue.publishUsed(), false, "nothing new");
  });

  test("with EVENT_IDX: used_event and avail_event drive the decisions", () => {
    const { memory, addresses, driver, queue, batch, size } = pair({ eventIdx: true });
    const dv = ringView(memory);
    const usedEventOff = Number(addresses.avail) + 4 + 2 * size;
    const availEventOff = Number(addresses.used) + 4 + 8 * size;
    // avail_event is 0: the first publish (0 -> 1) crosses it.
    driver.add([{ addr: BUF_A, len: 1 }], []);
    assert.equal(driver.publish(), true);
    driver.add([{ addr: BUF_A, len: 1 }], []);
    assert.equal(driver.publish(), false, "avail_event 0 not in (1, 2]");
    assert.equal(queue.enableNotification(), true);
    assert.equal(dv.getUint16(availEventOff, true), 0, "avail_event = last avail idx (nothing popped yet)");
    assert.equal(queue.pop(batch), 2);
    assert.equal(queue.enableNotification(), false);
    assert.equal(dv.getUint16(availEventOff, true), 2);
    driver.add([{ addr: BUF_A, len: 1 }], []);
    assert.equal(driver.publish(), true, "avail_event 2 in (2, 3]");
    // Device side: the first publish always notifies, then used_event decides.
    driver.setUsedEvent(5);
    queue.addUsed(batch.head(0), 0);
    assert.equal(queue.publishUsed(), true, "first notification after start");
    queue.addUsed(batch.head(1), 0);
    assert.equal(queue.publishUsed(), false, "used_event 5 not in (1, 2]");
    assert.equal(dv.getUint16(usedEventOff, true), 5);
    assert.equal(queue.pop(batch), 1);
    queue.addUsed(batch.head(0), 0);
    assert.equal(queue.publishUsed(), false, "not in (2, 3]");
    driver.enableInterrupts();
    assert.equal(dv.getUint16(usedEventOff, true), 0, "driver has not collected yet");
    driver.collectUsed();
    driver.enableInterrupts();
    assert.equal(dv.getUint16(usedEventOff, true), 3);
    driver.add([{ addr: BUF_A, len: 1 }], []);
    driver.publish();
    queue.pop(batch);
    queue.addUsed(batch.head(0), 0);
    assert.equal(queue.publishUsed(), true, "used_event 3 in (3, 4]");
    queue.setAvailEvent(40);
    assert.equal(dv.getUint16(availEventOff, true), 40);
  });

  test("EVENT_IDX decisions across the u16 wrap", () => {
    const size = 4;
    const memory = makeMemory(size);
    const addresses = ringAddresses(size);
    const dv = ringView(memory);
    dv.setUint16(Number(addresses.avail) + 2, 65535, true);
    dv.setUint16(Number(addresses.used) + 2, 65535, true);
    dv.setUint16(Number(addresses.used) + 4 + 8 * size, 65535, true); // avail_event
    dv.setUint16(Number(addresses.avail) + 4 + 2 * size, 0, true); // used_event
    const driver = new SplitDriver({ size, memory, addresses, eventIdx: true, reset: false });
    const queue = new SplitQueue({ size, memory, addresses, eventIdx: true });
    queue.start(65535);
    driver.add([{ addr: BUF_A, len: 1 }], []);
    driver.add([{ addr: BUF_A, len: 1 }], []);
    assert.equal(driver.publish(), true, "65535 in (65535, 1]");
    const batch = new ChainBatch(size);
    assert.equal(queue.pop(batch), 2);
    queue.pushUsed(batch);
    assert.equal(queue.publishUsed(), true);
    queue.pop(batch);
    assert.equal(driver.collectUsed().length, 2);
  });
});

describe("segment cursor: the number fast path", () => {
  test("a memory with translateNumber yields the same segments; BigInt only at and above 2^53", () => {
    const T53 = 1n << 53n;
    const specs = [
      { guestAddr: RING_BASE, size: 0x1000 },
      { guestAddr: BUF_A, size: 0x8000 },
      { guestAddr: BUF_B, size: 0x8000 },
      { guestAddr: REMOTE, size: 0x1000, mapped: false },
      { guestAddr: T53 - 0x10n, size: 0x10 },
      { guestAddr: T53, size: 0x40 },
    ];
    const calls = { number: 0, bigint: 0 };
    const inner = new ArrayGuestMemory(specs);
    const fast: GuestMemory = {
      translate: (a, l) => (calls.bigint++, inner.translate(a, l)),
      translateNumber: (a, l) => (calls.number++, inner.translate(BigInt(a) as GuestAddress, l)),
      read: (a, d) => inner.read(a, d),
      write: (a, s) => inner.write(a, s),
    };
    const segments = [];
    for (const memory of [new ArrayGuestMemory(specs), fast]) {
      const a = ringAddresses(8);
      const ringBytes = memory === fast ? inner.regions[0]!.bytes : (memory as ArrayGuestMemory).regions[0]!.bytes;
      const ring = new DataView(ringBytes.buffer, ringBytes.byteOffset, ringBytes.byteLength);
      putDesc(ring, 0, 0, BUF_B - 0x100n, 0x200, NEXT, 1); // crosses A | B
      putDesc(ring, 0, 1, T53 - 8n, 0x20, NEXT | WRITE, 2); // crosses 2^53
      putDesc(ring, 0, 2, REMOTE, 0x10, NEXT | WRITE, 3); // a miss below 2^53
      putDesc(ring, 0, 3, 1n << 60n, 0x10, WRITE, 0); // far above 2^53
      ring.setUint16(Number(a.avail) + 4, 0, true);
      ring.setUint16(Number(a.avail) + 2, 1, true);
      const queue = new SplitQueue({ size: 8, memory, addresses: a });
      queue.start(0);
      const batch = new ChainBatch(8);
      assert.equal(queue.pop(batch), 1);
      calls.number = calls.bigint = 0;
      segments.push(segmentsOf(queue, batch, 0).map((s) => [s.kind, s.addr, s.len, s.writable]));
    }
    assert.deepEqual(segments[0], [
      ["host", BUF_B - 0x100n, 0x100, false],
      ["host", BUF_B, 0x100, false],
      ["host", T53 - 8n, 8, true],
      ["host", T53, 0x18, true],
      ["remote", REMOTE, 0x10, true],
      ["remote", 1n << 60n, 0x10, true],
    ]);
    assert.deepEqual(segments[1], segments[0], "the fast path changes nothing");
    assert.deepEqual(calls, { number: 4, bigint: 2 });
  });

  test("a memory with translateInto: the same segments, each host one view[viewOffset, +len) of a view it shares, written through it", async () => {
    const specs = [
      { guestAddr: RING_BASE, size: 0x1000 },
      { guestAddr: BUF_A, size: 0x8000 },
      { guestAddr: BUF_B, size: 0x8000 },
      { guestAddr: REMOTE, size: 0x1000, mapped: false },
    ];
    const inner = new ArrayGuestMemory(specs);
    let into = 0;
    const windowed: GuestMemory = {
      translate: (a, l) => inner.translate(a, l),
      translateNumber: (a, l) => inner.translate(BigInt(a) as GuestAddress, l),
      // The whole backing buffer as the view: the segment starts inside it, at its byteOffset.
      translateInto: (a, l, out) => {
        const r = inner.translate(BigInt(a) as GuestAddress, l);
        if (!r.ok) return false;
        into++;
        out.view = new Uint8Array(r.span.bytes.buffer);
        out.offset = r.span.bytes.byteOffset;
        out.length = r.span.bytes.length;
        out.writable = r.span.writable;
        return true;
      },
      read: (a, d) => inner.read(a, d),
      write: (a, s) => inner.write(a, s),
    };
    const a = ringAddresses(8);
    const ringBytes = inner.regions[0]!.bytes;
    const ring = new DataView(ringBytes.buffer, ringBytes.byteOffset, ringBytes.byteLength);
    putDesc(ring, 0, 0, BUF_B - 0x100n, 0x200, NEXT, 1); // crosses A | B
    putDesc(ring, 0, 1, BUF_A + 0x40n, 0x30, NEXT | WRITE, 2);
    putDesc(ring, 0, 2, REMOTE, 0x10, WRITE, 0); // a miss: remote
    ring.setUint16(Number(a.avail) + 4, 0, true);
    ring.setUint16(Number(a.avail) + 2, 1, true);
    const queue = new SplitQueue({ size: 8, memory: windowed, addresses: a });
    queue.start(0);
    const batch = new ChainBatch(8);
    assert.equal(queue.pop(batch), 1);
    const seen: unknown[] = [];
    const cur = queue.segments(batch, 0);
    while (cur.next()) {
      seen.push([cur.kind, cur.addr, cur.len, cur.writable]);
      if (cur.kind === "remote") {
        assert.equal(cur.bytes.length, 0);
        continue;
      }
      assert.ok(cur.view.length > cur.len, "a view larger than the segment");
      cur.view[cur.viewOffset] = 0x77;
      assert.equal(cur.bytes.length, cur.len);
      assert.equal(cur.bytes[0], 0x77, "bytes is the same range of the same memory");
      assert.equal(cur.bytes, cur.bytes, "made once per segment");
    }
    assert.deepEqual(seen, [
      ["host", BUF_B - 0x100n, 0x100, false],
      ["host", BUF_B, 0x100, false],
      ["host", BUF_A + 0x40n, 0x30, true],
      ["remote", REMOTE, 0x10, true],
    ]);
    assert.equal(into, 3, "every host segment through translateInto");
    const src = Uint8Array.from({ length: 0x30 }, (_, i) => i + 1);
    await assert.rejects(
      writeChain(queue.segments(batch, 0), windowed, new Uint8Array(0x41)),
      (e: unknown) => isVirtqueueError(e) && e.code === "CHAIN_OVERRUN",
    );
    assert.equal(await writeChain(queue.segments(batch, 0), windowed, src), 0x30);
    const back = new Uint8Array(0x30);
    await inner.read((BUF_A + 0x40n) as GuestAddress, back);
    assert.deepEqual(back, src, "writeChain wrote through the view at its offset");
  });
});
