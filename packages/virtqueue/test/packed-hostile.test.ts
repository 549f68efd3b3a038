/**
 * Hostile guests against the packed device queue, one case per rule, and hostile devices against
 * the packed driver: each gives a typed error that breaks only that queue (later calls throw
 * BROKEN with the cause), consumes nothing, and never loops. Caller errors do not break anything.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ChainBatch, PackedDescFlag, PackedQueue, isVirtqueueError } from "../src/index.js";
import type { VirtqueueError, VirtqueueErrorCode } from "../src/index.js";
import type { PackedDriver } from "../src/driver/index.js";
import { AVAIL_0, AVAIL_1, USED_1, packedAddresses, packedPair, putPacked } from "./helpers/packed-ring.js";
import { BUF_A, BUF_B, HOLE, READ_ONLY, REMOTE, makeMemory, ringView } from "./helpers/ring-fixture.js";

const { NEXT, WRITE, INDIRECT } = PackedDescFlag;
const SIZE = 5;
const T = 0x4000; // indirect tables at BUF_A + T
const TABLE = BUF_A + BigInt(T);

type Put = (i: number, addr: bigint, len: number, id: number, flags: number) => void;
interface Ctx {
  readonly put: Put;
  /** Indirect table entries at BUF_A + T. */
  readonly entry: Put;
  readonly queue: PackedQueue;
  readonly batch: ChainBatch;
}
interface Case {
  readonly name: string;
  readonly code: VirtqueueErrorCode;
  readonly indirect?: boolean;
  readonly lay: (c: Ctx) => void;
}

const one =
  (flags: number, id = 0, len = 8): ((c: Ctx) => void) =>
  (c) =>
    c.put(0, BUF_A, len, id, flags);
const cases: Case[] = [
  { name: "the head is marked used in this lap", code: "BAD_WRAP", lay: one(USED_1) },
  { name: "a list member is not available", code: "BAD_WRAP", lay: (c) => (c.put(0, BUF_A, 8, 0, AVAIL_1 | NEXT), c.put(1, BUF_A, 8, 0, 0)) },
  {
    name: "a list member is available for the other lap",
    code: "BAD_WRAP",
    lay: (c) => (c.put(0, BUF_A, 8, 0, AVAIL_1 | NEXT), c.put(1, BUF_A, 8, 0, AVAIL_0)),
  },
  {
    name: "a list wraps onto itself (NEXT everywhere: the packed loop)",
    code: "CHAIN_TOO_LONG",
    lay: (c) => {
      for (let i = 0; i < SIZE; i++) c.put(i, BUF_A, 8, 0, AVAIL_1 | NEXT);
    },
  },
  { name: "a list over 2^32 bytes", code: "CHAIN_TOO_LONG", lay: (c) => (c.put(0, BUF_A, 0xffffffff, 0, AVAIL_1 | NEXT), c.put(1, BUF_A, 2, 0, AVAIL_1)) },
  {
    name: "a list runs into descriptors the device still holds",
    code: "AVAIL_OVERRUN",
    lay: (c) => {
      c.put(0, BUF_A, 8, 0, AVAIL_1 | NEXT);
      c.put(1, BUF_A, 8, 0, AVAIL_1);
      assert.equal(c.queue.pop(c.batch), 1); // offsets 0, 1 held: 3 free
      for (let i = 2; i < SIZE; i++) c.put(i, BUF_A, 8, 1, AVAIL_1 | NEXT);
      c.put(0, BUF_A, 8, 1, AVAIL_0); // lap 0 at offset 0: not the driver's
    },
  },
  {
    name: "a new list at a descriptor the device still holds",
    code: "AVAIL_OVERRUN",
    lay: (c) => {
      for (let i = 0; i < SIZE; i++) c.put(i, BUF_A, 8, i, AVAIL_1);
      assert.equal(c.queue.pop(c.batch), SIZE);
      c.put(0, BUF_A, 8, 0, AVAIL_0);
    },
  },
  { name: "zero-length descriptor", code: "ZERO_LENGTH", lay: one(AVAIL_1, 0, 0) },
  { name: "buffer wrapping past 2^64", code: "ADDRESS_WRAP", lay: (c) => c.put(0, (1n << 64n) - 8n, 9, 0, AVAIL_1) },
  { name: "readable after writable", code: "BAD_ORDER", lay: (c) => (c.put(0, BUF_A, 8, 0, AVAIL_1 | NEXT | WRITE), c.put(1, BUF_A, 8, 0, AVAIL_1)) },
  { name: "buffer id = queue size", code: "BAD_BUFFER_ID", lay: one(AVAIL_1, SIZE) },
  { name: "buffer id 0xffff", code: "BAD_BUFFER_ID", lay: one(AVAIL_1, 0xffff) },
  { name: "two lists with one id in one pop", code: "BUFFER_ID_IN_FLIGHT", lay: (c) => (c.put(0, BUF_A, 8, 3, AVAIL_1), c.put(1, BUF_A, 8, 3, AVAIL_1)) },
  {
    name: "an id reused while the device holds it",
    code: "BUFFER_ID_IN_FLIGHT",
    lay: (c) => {
      c.put(0, BUF_A, 8, 2, AVAIL_1);
      assert.equal(c.queue.pop(c.batch), 1);
      c.put(1, BUF_A, 8, 2, AVAIL_1);
    },
  },
  {
    name: "an id reused after addUsed, before publishUsed handed it back",
    code: "BUFFER_ID_IN_FLIGHT",
    lay: (c) => {
      c.put(0, BUF_A, 8, 2, AVAIL_1);
      assert.equal(c.queue.pop(c.batch), 1);
      c.queue.addUsed(2, 0);
      c.put(1, BUF_A, 8, 2, AVAIL_1);
    },
  },
  { name: "INDIRECT without the feature", code: "INDIRECT_NOT_NEGOTIATED", lay: (c) => c.put(0, TABLE, 16, 0, AVAIL_1 | INDIRECT) },
  {
    name: "INDIRECT|NEXT",
    code: "INDIRECT_WITH_NEXT",
    indirect: true,
    lay: (c) => (c.put(0, TABLE, 16, 0, AVAIL_1 | INDIRECT | NEXT), c.put(1, BUF_A, 8, 0, AVAIL_1)),
  },
  {
    name: "INDIRECT inside a NEXT-linked list",
    code: "INDIRECT_WITH_NEXT",
    indirect: true,
    lay: (c) => (c.put(0, BUF_A, 8, 0, AVAIL_1 | NEXT), c.put(1, TABLE, 16, 0, AVAIL_1 | INDIRECT)),
  },
  { name: "indirect table length 0", code: "BAD_INDIRECT_LENGTH", indirect: true, lay: (c) => c.put(0, TABLE, 0, 0, AVAIL_1 | INDIRECT) },
  { name: "indirect table length not a multiple of 16", code: "BAD_INDIRECT_LENGTH", indirect: true, lay: (c) => c.put(0, TABLE, 24, 0, AVAIL_1 | INDIRECT) },
  {
    name: "indirect table longer than maxIndirectLength (4)",
    code: "BAD_INDIRECT_LENGTH",
    indirect: true,
    lay: (c) => c.put(0, TABLE, 80, 0, AVAIL_1 | INDIRECT),
  },
  { name: "indirect table of 2^32 - 16 bytes", code: "BAD_INDIRECT_LENGTH", indirect: true, lay: (c) => c.put(0, BUF_A, 0xfffffff0, 0, AVAIL_1 | INDIRECT) },
  { name: "indirect table in a hole", code: "INDIRECT_UNMAPPED", indirect: true, lay: (c) => c.put(0, HOLE, 32, 0, AVAIL_1 | INDIRECT) },
  {
    name: "indirect table outside the memory table (fallback memory)",
    code: "INDIRECT_UNMAPPED",
    indirect: true,
    lay: (c) => c.put(0, REMOTE, 32, 0, AVAIL_1 | INDIRECT),
  },
  {
    name: "indirect table running off mapped memory",
    code: "INDIRECT_UNMAPPED",
    indirect: true,
    lay: (c) => c.put(0, BUF_B + 0x8000n - 16n, 32, 0, AVAIL_1 | INDIRECT),
  },
  { name: "indirect table wrapping past 2^64", code: "ADDRESS_WRAP", indirect: true, lay: (c) => c.put(0, (1n << 64n) - 16n, 32, 0, AVAIL_1 | INDIRECT) },
  {
    name: "zero-length indirect entry",
    code: "ZERO_LENGTH",
    indirect: true,
    lay: (c) => (c.entry(0, BUF_A, 8, 0, 0), c.entry(1, BUF_A, 0, 0, 0), c.put(0, TABLE, 32, 0, AVAIL_1 | INDIRECT)),
  },
  {
    name: "indirect entry wrapping past 2^64",
    code: "ADDRESS_WRAP",
    indirect: true,
    lay: (c) => (c.entry(0, (1n << 64n) - 1n, 2, 0, 0), c.put(0, TABLE, 16, 0, AVAIL_1 | INDIRECT)),
  },
  {
    name: "indirect entry readable after writable",
    code: "BAD_ORDER",
    indirect: true,
    lay: (c) => (c.entry(0, BUF_A, 8, 0, WRITE), c.entry(1, BUF_A, 8, 0, 0), c.put(0, TABLE, 32, 0, AVAIL_1 | INDIRECT)),
  },
];

function setup(indirect: boolean) {
  const memory = makeMemory(8);
  const dv = ringView(memory);
  const tdv = new DataView(memory.regions[1]!.bytes.buffer);
  const broken: VirtqueueError[] = [];
  const queue = new PackedQueue({ size: SIZE, memory, addresses: packedAddresses(SIZE), indirect, maxIndirectLength: 4, onBroken: (e) => broken.push(e) });
  queue.start();
  const batch = new ChainBatch(SIZE);
  const put: Put = (i, addr, len, id, flags) => putPacked(dv, 0, i, addr, len, id, flags);
  const entry: Put = (i, addr, len, id, flags) => putPacked(tdv, T, i, addr, len, id, flags);
  return { memory, queue, batch, broken, ctx: { put, entry, queue, batch } };
}

describe("packed device: hostile guests", () => {
  for (const c of cases) {
    test(`${c.name} -> ${c.code}`, () => {
      const { queue, batch, broken, ctx } = setup(c.indirect ?? false);
      c.lay(ctx);
      const before = queue.base;
      let err: unknown;
      assert.throws(
        () => queue.pop(batch),
        (e) => ((err = e), isVirtqueueError(e) && e.code === c.code),
      );
      assert.equal(queue.brokenBy, err);
      assert.deepEqual(broken, [err], "onBroken once, with the error");
      assert.equal(batch.count, 0);
      assert.equal(queue.base, before, "nothing consumed");
      for (const call of [
        () => queue.pop(batch),
        () => queue.publishUsed(),
        () => queue.enableNotification(),
        () => queue.addUsed(0, 0),
        () => queue.hasAvailable(),
      ]) {
        assert.throws(call, (e) => isVirtqueueError(e) && e.code === "BROKEN" && e.cause === err);
      }
      assert.equal(broken.length, 1);
      queue.stop();
      queue.start();
      assert.equal(queue.brokenBy, undefined, "start clears broken");
    });
  }

  test("a device-writable buffer in read-only memory breaks the queue when iterated", () => {
    const { queue, batch, broken, ctx } = setup(false);
    ctx.put(0, READ_ONLY, 8, 0, AVAIL_1 | WRITE);
    assert.equal(queue.pop(batch), 1);
    const cur = queue.segments(batch, 0);
    assert.throws(
      () => cur.next(),
      (e) => isVirtqueueError(e) && e.code === "READ_ONLY_BUFFER",
    );
    assert.equal(broken.length, 1);
    assert.equal(queue.brokenBy?.code, "READ_ONLY_BUFFER");
  });

  test("a failed pop marks no ID: the lists before the bad one pop again once the guest fixes it", () => {
    const { queue, batch, ctx } = setup(false);
    ctx.put(0, BUF_A, 8, 1, AVAIL_1);
    ctx.put(1, BUF_A, 0, 2, AVAIL_1);
    assert.throws(
      () => queue.pop(batch),
      (e) => isVirtqueueError(e) && e.code === "ZERO_LENGTH",
    );
    ctx.put(1, BUF_A, 8, 2, AVAIL_1);
    queue.stop();
    queue.start();
    assert.equal(queue.pop(batch), 2);
    assert.deepEqual([batch.head(0), batch.head(1)], [1, 2]);
  });

  test("stopping a broken queue drops its queued used descriptors; their IDs stay held", () => {
    const { queue, batch, ctx } = setup(false);
    ctx.put(0, BUF_A, 8, 1, AVAIL_1);
    ctx.put(1, READ_ONLY, 8, 2, AVAIL_1 | WRITE);
    assert.equal(queue.pop(batch), 2);
    queue.addUsed(1, 0);
    assert.throws(() => queue.segments(batch, 1).next());
    assert.equal(queue.stop(), 0x8000_8002, "used position as published");
    queue.start();
    queue.addUsed(1, 0);
    queue.addUsed(2, 0);
    assert.equal(queue.publishUsed(), true);
    assert.equal(queue.base, 0x8002_8002);
  });
});

describe("packed device: caller errors do not break the queue", () => {
  test("addUsed / pushUsed of IDs the device does not hold", () => {
    const { queue, batch, ctx } = setup(false);
    assert.throws(
      () => queue.addUsed(0, 0),
      (e) => isVirtqueueError(e) && e.code === "BAD_USED_ID",
    );
    ctx.put(0, BUF_A, 8, 3, AVAIL_1);
    ctx.put(1, BUF_A, 8, 4, AVAIL_1);
    assert.equal(queue.pop(batch), 2);
    for (const bad of [SIZE, -1, 1.5, Number.NaN, 0])
      assert.throws(
        () => queue.addUsed(bad, 0),
        (e) => isVirtqueueError(e) && e.code === "BAD_USED_ID",
        String(bad),
      );
    batch.heads[1] = 3; // the same ID twice: all or nothing
    assert.throws(
      () => queue.pushUsed(batch),
      (e) => isVirtqueueError(e) && e.code === "BAD_USED_ID",
    );
    assert.equal(queue.publishUsed(), false, "nothing was queued");
    queue.addUsed(3, 1);
    assert.throws(
      () => queue.addUsed(3, 1),
      (e) => isVirtqueueError(e) && e.code === "BAD_USED_ID",
      "used twice",
    );
    queue.addUsed(4, 1);
    assert.equal(queue.publishUsed(), true);
    assert.equal(queue.brokenBy, undefined);
  });

  test("set-up errors: not started, bad bases, unmapped or read-only areas", () => {
    const memory = makeMemory(8);
    const a = packedAddresses(SIZE);
    const q = new PackedQueue({ size: SIZE, memory, addresses: a });
    assert.throws(
      () => q.pop(new ChainBatch(1)),
      (e) => isVirtqueueError(e) && e.code === "NOT_STARTED",
    );
    for (const bad of [0x8000_8005, 0x8001_8000, 0x8000_0001, 2 ** 32]) assert.throws(() => q.setBase(bad), RangeError);
    q.start(0x8004_0001); // avail one lap ahead of used: 2 descriptors held since before the restart
    assert.throws(() => q.setBase(0x8000_8000), RangeError, "not while started");
    assert.equal(q.stop(), 0x8004_0001);
    assert.throws(
      () => new PackedQueue({ size: SIZE, memory, addresses: { ...a, desc: HOLE } }).start(),
      (e) => isVirtqueueError(e) && e.code === "RING_UNMAPPED",
    );
    assert.throws(
      () => new PackedQueue({ size: SIZE, memory, addresses: { ...a, used: READ_ONLY } }).start(),
      (e) => isVirtqueueError(e) && e.code === "RING_UNMAPPED",
    );
    new PackedQueue({ size: SIZE, memory, addresses: { ...a, avail: READ_ONLY } }).start(); // the device only reads the driver area
    assert.throws(() => new PackedQueue({ size: 6, memory, addresses: a, maxIndirectLength: 0 }), RangeError);
  });
});

describe("packed driver: hostile devices", () => {
  function run(lay: (put: Put, d: PackedDriver<string>) => void) {
    const { memory, driver } = packedPair({ size: SIZE });
    const dv = ringView(memory);
    lay((i, addr, len, id, flags) => putPacked(dv, 0, i, addr, len, id, flags), driver);
    let err: unknown;
    assert.throws(
      () => driver.collectUsed(),
      (e) => ((err = e), isVirtqueueError(e) && e.code === "BAD_USED_ID"),
    );
    assert.equal(driver.brokenBy, err);
    for (const call of [() => driver.collectUsed(), () => driver.add([{ addr: BUF_A, len: 1 }], []), () => driver.publish()]) {
      assert.throws(call, (e) => isVirtqueueError(e) && e.code === "BROKEN" && e.cause === err);
    }
  }
  test("a used ID >= queue size", () => run((put) => put(0, 0n, 0, SIZE, USED_1)));
  test("a used ID never added", () => run((put) => put(0, 0n, 0, 2, USED_1)));
  test("a used ID added but not yet made available", () => run((put, d) => (d.add([{ addr: BUF_A, len: 1 }], []), put(0, 0n, 0, 0, USED_1))));
  test("a used ID returned twice", () =>
    run((put, d) => {
      d.add([{ addr: BUF_A, len: 1 }], [], "a");
      d.add([{ addr: BUF_A, len: 1 }], [], "b");
      d.publish();
      put(0, 0n, 0, 0, USED_1);
      assert.deepEqual(d.collectUsed(), [{ id: 0, len: 0, token: "a" }]);
      put(1, 0n, 0, 0, USED_1);
    }));

  test("caller errors: RING_FULL, BAD_BUFFER, INDIRECT_NOT_NEGOTIATED / _UNMAPPED do not break it", () => {
    const { driver } = packedPair({ size: SIZE });
    const b = { addr: BUF_A, len: 1 };
    const code = (c: VirtqueueErrorCode) => (e: unknown) => isVirtqueueError(e) && e.code === c;
    assert.throws(() => driver.add([], []), code("BAD_BUFFER"));
    assert.throws(() => driver.add([{ addr: BUF_A, len: 0 }], []), code("BAD_BUFFER"));
    assert.throws(() => driver.add([], [{ addr: BUF_A, len: 2 ** 32 }]), code("BAD_BUFFER"));
    assert.throws(() => driver.add([{ addr: (1n << 64n) - 1n, len: 2 }], []), code("BAD_BUFFER"));
    assert.throws(
      () =>
        driver.add(
          Array.from({ length: SIZE + 1 }, () => b),
          [],
        ),
      code("RING_FULL"),
    );
    assert.throws(() => driver.addIndirect([b], [], TABLE), code("INDIRECT_NOT_NEGOTIATED"));
    const ind = packedPair({ size: SIZE, indirect: true }).driver;
    assert.throws(() => ind.addIndirect([b], [], READ_ONLY), code("INDIRECT_UNMAPPED"));
    assert.equal(ind.numFree, SIZE);
    // Every ID in flight is distinct: the driver never reuses one.
    const ids = Array.from({ length: SIZE }, () => driver.add([b], []));
    assert.deepEqual([...new Set(ids)].sort(), [0, 1, 2, 3, 4]);
    assert.equal(driver.brokenBy, undefined);
  });
});
