/**
 * Inflight I/O tracking on packed rings (docs/protocol.md#inflight-tracking-and-reconnect): the
 * region's layout, recording and releasing in the protocol's order, and a restarted device queue
 * (a second queue over the same ring and region, as a new back-end process) that serves the lists
 * its predecessor left in flight — first, in counter order, from the region (their ring slots may
 * already hold used descriptors), exactly once — including a predecessor that died halfway
 * through recording a list or publishing a used batch. A region that does not add up breaks only
 * the queue, with `BAD_INFLIGHT`. The back-end's own tests run the same on memfd areas.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ChainBatch, PACKED_INFLIGHT_VERSION, PackedInflight, PackedQueue, isVirtqueueError, packedInflightQueueBytes } from "../src/index.js";
import { PackedDriver } from "../src/driver/index.js";
import type { ArrayGuestMemory } from "../src/testing/index.js";
import { packedAddresses } from "./helpers/packed-ring.js";
import { BUF_A, makeMemory } from "./helpers/ring-fixture.js";

const SIZE = 8;
const FRESH = 0x8000_8000;

/** A region for one queue of `descNum` entries and views of its fields. */
function region(descNum = SIZE) {
  const bytes = new Uint8Array(packedInflightQueueBytes(descNum));
  const dv = new DataView(bytes.buffer);
  const e = (i: number) => 32 + 32 * i;
  return {
    bytes,
    dv,
    version: () => dv.getUint16(8, true),
    descNum: () => dv.getUint16(10, true),
    freeHead: () => dv.getUint16(12, true),
    oldFreeHead: () => dv.getUint16(14, true),
    usedIdx: () => dv.getUint16(16, true),
    oldUsedIdx: () => dv.getUint16(18, true),
    usedWrap: () => bytes[20]!,
    inflight: (i: number) => bytes[e(i)]!,
    next: (i: number) => dv.getUint16(e(i) + 2, true),
    last: (i: number) => dv.getUint16(e(i) + 4, true),
    num: (i: number) => dv.getUint16(e(i) + 6, true),
    counter: (i: number) => dv.getBigUint64(e(i) + 8, true),
    id: (i: number) => dv.getUint16(e(i) + 16, true),
    len: (i: number) => dv.getUint32(e(i) + 20, true),
    addr: (i: number) => dv.getBigUint64(e(i) + 24, true),
    set16: (off: number, v: number) => dv.setUint16(off, v, true),
    entry: e,
  };
}

/** A tracking device queue over `memory` and `bytes`, started at `base` (what the front-end sends: the used position twice after a restart). */
function device(memory: ArrayGuestMemory, bytes: Uint8Array, base = FRESH, inflight = new PackedInflight(bytes, SIZE)) {
  const queue = new PackedQueue({ size: SIZE, memory, addresses: packedAddresses(SIZE), inflight });
  queue.start(base);
  return queue;
}

/** A driver and a tracking device queue over fresh memory. */
function scenario() {
  const memory = makeMemory(SIZE);
  const r = region();
  const driver = new PackedDriver<string>({ size: SIZE, memory, addresses: packedAddresses(SIZE) });
  return { memory, r, driver, first: device(memory, r.bytes), batch: new ChainBatch(SIZE) };
}

/** Adds lists tagged t<k>: `shape[k]` readable buffers of 16 bytes each; publishes them. */
function submit(driver: PackedDriver<string>, shape: readonly number[], from = 0): number[] {
  const ids = shape.map((n, k) => {
    const bufs = Array.from({ length: n }, (_, j) => ({ addr: BUF_A + BigInt(0x100 * (from + k) + 16 * j), len: 16 }));
    return driver.add(bufs, [], `t${from + k}`);
  });
  driver.publish();
  return ids;
}

/** The used position as the front-end sends it after a restart: offset | wrap << 15, twice. */
function restartBase(driver: PackedDriver<string>): number {
  const u = driver.lastUsedIndex;
  return (u | (u << 16)) >>> 0;
}

/** Pops everything (recovered lists first), completes it all, returns the buffer IDs in pop order and the first address of each list. */
function drain(queue: PackedQueue, batch: ChainBatch): { ids: number[]; addrs: bigint[] } {
  const ids: number[] = [];
  const addrs: bigint[] = [];
  for (let n; (n = queue.pop(batch)) > 0; ) {
    for (let c = 0; c < n; c++) {
      ids.push(batch.heads[c]!);
      addrs.push(batch.address(batch.starts[c]!));
    }
    queue.pushUsed(batch);
    queue.publishUsed();
  }
  return { ids, addrs };
}

/** Tokens collected by the driver. */
function collected(driver: PackedDriver<string>): string[] {
  return driver.collectUsed().map((u) => u.token!);
}

describe("packed inflight region", () => {
  test("per-queue sizes: a 32-byte header and 32 bytes per entry, rounded up to 64; any size in 1..32768", () => {
    assert.equal(packedInflightQueueBytes(1), 64);
    assert.equal(packedInflightQueueBytes(3), 128);
    assert.equal(packedInflightQueueBytes(8), 320);
    assert.equal(packedInflightQueueBytes(256), 8256);
    for (const bad of [0, 32769, 1.5])
      assert.throws(
        () => packedInflightQueueBytes(bad),
        (e) => isVirtqueueError(e) && e.code === "BAD_QUEUE_SIZE",
      );
    assert.throws(() => new PackedInflight(new Uint8Array(100), 3), RangeError);
  });

  test("a fresh region is initialised at start; lists are recorded when popped and released once published", () => {
    const { r, driver, first: queue, batch } = scenario();
    assert.equal(r.version(), PACKED_INFLIGHT_VERSION);
    assert.equal(r.descNum(), SIZE);
    assert.deepEqual([r.freeHead(), r.usedIdx(), r.usedWrap()], [0, 0, 1]);
    const ids = submit(driver, [1, 2, 1]);
    assert.equal(queue.pop(batch), 3);
    // Entries 0, 1-2, 3 hold the lists; heads 0, 1, 3 are in flight with counters 0, 1, 2.
    assert.deepEqual([0, 1, 3].map(r.inflight), [1, 1, 1]);
    assert.deepEqual([0, 1, 3].map(r.counter), [0n, 1n, 2n]);
    assert.deepEqual([0, 1, 3].map(r.num), [1, 2, 1]);
    assert.deepEqual([0, 1, 3].map(r.last), [0, 2, 3]);
    assert.deepEqual([r.addr(1), r.len(1), r.id(2), r.addr(2)], [BUF_A + 0x100n, 16, ids[1], BUF_A + 0x110n]);
    assert.deepEqual([r.freeHead(), r.oldFreeHead()], [4, 4]);
    queue.addUsed(ids[1]!, 0);
    assert.equal(r.inflight(1), 1, "still in flight until published");
    queue.publishUsed();
    assert.deepEqual([0, 1, 3].map(r.inflight), [1, 0, 1]);
    assert.deepEqual([r.freeHead(), r.oldFreeHead(), r.usedIdx(), r.oldUsedIdx()], [1, 1, 2, 2]);
    assert.deepEqual(collected(driver), ["t1"]);
  });

  test("a restarted device resubmits the lists left in flight first, in counter order, from the region; every list completes once", () => {
    const { memory, r, driver, first, batch } = scenario();
    const ids = submit(driver, [1, 2, 1, 1, 1]);
    assert.equal(first.pop(batch, 4), 4);
    first.addUsed(ids[2]!, 0); // its used descriptor overwrites list t0's ring slot
    first.publishUsed();
    assert.deepEqual(collected(driver), ["t2"]);
    // The process dies. A new one gets the region and the used position.
    const second = device(memory, r.bytes, restartBase(driver));
    const { ids: order, addrs } = drain(second, batch);
    assert.deepEqual(order, [ids[0], ids[1], ids[3], ids[4]]);
    assert.deepEqual(addrs, [BUF_A, BUF_A + 0x100n, BUF_A + 0x300n, BUF_A + 0x400n], "t0 from the region, not from its overwritten slot");
    assert.deepEqual(collected(driver).sort(), ["t0", "t1", "t3", "t4"]);
    assert.equal(driver.numFree, SIZE);
    assert.equal(second.stop(), (driver.availIndex | (driver.lastUsedIndex << 16)) >>> 0, "device and driver agree on both positions");
  });

  test("a list recorded halfway when the process died is taken again from the ring, not resubmitted", () => {
    const { memory, r, driver, first, batch } = scenario();
    const ids = submit(driver, [1, 1, 2]);
    assert.equal(first.pop(batch, 2), 2);
    // Recording of t2 had begun: its head entry flagged, one descriptor stored, free_head moved, old_free_head not.
    const h = r.oldFreeHead();
    r.bytes[r.entry(h)] = 1;
    r.set16(r.entry(h) + 6, 1);
    r.set16(12, r.next(h));
    const second = device(memory, r.bytes, restartBase(driver));
    assert.deepEqual(drain(second, batch).ids, ids);
    assert.deepEqual(collected(driver).sort(), ["t0", "t1", "t2"]);
  });

  /** A region whose `hook` method stops the process (throws) at one step of publishing. */
  function dying(bytes: Uint8Array, hook: "beforePublish" | "afterPublish") {
    class Dying extends PackedInflight {
      override beforePublish(usedIdx: number, usedWrap: number): void {
        super.beforePublish(usedIdx, usedWrap);
        if (hook === "beforePublish") throw new Error("killed");
      }
      override afterPublish(): void {
        if (hook === "afterPublish") throw new Error("killed");
        super.afterPublish();
      }
    }
    return new Dying(bytes, SIZE);
  }

  for (const [hook, reached] of [
    ["beforePublish", false],
    ["afterPublish", true],
  ] as const) {
    test(`a used batch ${reached ? "whose flags reached the ring is committed" : "that did not reach the ring is rolled back"} when the process died during publishing`, () => {
      const memory = makeMemory(SIZE);
      const r = region();
      const driver = new PackedDriver<string>({ size: SIZE, memory, addresses: packedAddresses(SIZE) });
      const first = device(memory, r.bytes, FRESH, dying(r.bytes, hook));
      const batch = new ChainBatch(SIZE);
      const ids = submit(driver, [1, 2, 1]);
      assert.equal(first.pop(batch), 3);
      first.addUsed(ids[1]!, 0);
      first.addUsed(ids[0]!, 0);
      assert.throws(() => first.publishUsed(), /killed/);
      assert.notEqual(r.usedIdx(), r.oldUsedIdx(), "the region was left between two batches");
      const early = collected(driver);
      assert.deepEqual(early, reached ? ["t1", "t0"] : []);
      const second = device(memory, r.bytes, restartBase(driver));
      assert.deepEqual(drain(second, batch).ids, reached ? [ids[2]] : ids);
      assert.deepEqual([...early, ...collected(driver)].sort(), ["t0", "t1", "t2"]);
    });
  }

  test("pops between queued used descriptors and their publication take no entry of the batch", () => {
    const { memory, r, driver, first, batch } = scenario();
    const ids = submit(driver, [2, 2]);
    assert.equal(first.pop(batch, 1), 1);
    first.addUsed(ids[0]!, 0);
    assert.equal(first.pop(batch, 1), 1, "t1 taken before t0's used descriptor is published");
    assert.equal(r.inflight(0), 1);
    assert.deepEqual([r.num(2), r.addr(2)], [2, BUF_A + 0x100n], "t1 went to fresh entries");
    // Died before publishing: both lists are resubmitted, t0 first.
    const second = device(memory, r.bytes, restartBase(driver));
    assert.deepEqual(drain(second, batch), { ids, addrs: [BUF_A, BUF_A + 0x100n] });
    assert.deepEqual(collected(driver).sort(), ["t0", "t1"]);
  });

  test("with no inflight record, the driver lays the outstanding lists out again from the used position; each is popped once", () => {
    const memory = makeMemory(SIZE);
    const addresses = packedAddresses(SIZE);
    const driver = new PackedDriver<{ readable: { addr: bigint; len: number }[]; writable: never[]; tag: string }>({ size: SIZE, memory, addresses });
    const first = new PackedQueue({ size: SIZE, memory, addresses });
    first.start(FRESH);
    const batch = new ChainBatch(SIZE);
    const lists = [1, 2, 1, 3].map((n, k) => ({
      readable: Array.from({ length: n }, (_, j) => ({ addr: BUF_A + BigInt(0x100 * k + 16 * j), len: 16 })),
      writable: [] as never[],
      tag: `t${k}`,
    }));
    const ids = lists.map((l) => driver.add(l.readable, l.writable, l));
    driver.publish();
    assert.equal(first.pop(batch, 3), 3);
    first.addUsed(ids[1]!, 0);
    first.publishUsed();
    assert.deepEqual(
      driver.collectUsed().map((u) => u.token!.tag),
      ["t1"],
    );
    const base = driver.requeueOutstanding((t) => t!);
    const second = new PackedQueue({ size: SIZE, memory, addresses });
    second.start(base);
    const { ids: order, addrs } = drain(second, batch);
    assert.deepEqual(order, [ids[0], ids[2], ids[3]]);
    assert.deepEqual(addrs, [BUF_A, BUF_A + 0x200n, BUF_A + 0x300n]);
    assert.deepEqual(
      driver.collectUsed().map((u) => u.token!.tag),
      ["t0", "t2", "t3"],
    );
    assert.equal(driver.numFree, SIZE);
  });
});

describe("hostile packed inflight regions", () => {
  /** A region in use (two lists in flight, one completed), `corrupt` applied, then a restarted device. */
  function restartWith(corrupt: (r: ReturnType<typeof region>) => void) {
    const { memory, r, driver, first, batch } = scenario();
    const ids = submit(driver, [2, 1, 1]);
    assert.equal(first.pop(batch), 3);
    first.addUsed(ids[1]!, 0);
    first.publishUsed();
    corrupt(r);
    return { second: device(memory, r.bytes, restartBase(driver)), batch };
  }

  for (const [what, corrupt, code] of [
    ["desc_num not the area's", (r) => r.set16(10, SIZE + 1), "BAD_INFLIGHT"],
    ["used_idx past the ring", (r) => r.set16(16, SIZE), "BAD_INFLIGHT"],
    ["old_free_head past the entries", (r) => r.set16(14, SIZE + 1), "BAD_INFLIGHT"],
    ["a free list that loops", (r) => r.set16(r.entry(7) + 2, r.oldFreeHead()), "BAD_INFLIGHT"],
    ["a list longer than the ring", (r) => r.set16(r.entry(0) + 6, SIZE + 1), "BAD_INFLIGHT"],
    ["a list reaching past the entries", (r) => r.set16(r.entry(0) + 2, 0xffff), "BAD_INFLIGHT"],
    ["a list whose last entry is not where it ends", (r) => r.set16(r.entry(0) + 4, 0), "BAD_INFLIGHT"],
    ["two lists of one buffer ID", (r) => r.set16(r.entry(3) + 16, r.id(1)), "BAD_INFLIGHT"],
    ["a buffer ID past the ring", (r) => r.set16(r.entry(3) + 16, SIZE), "BAD_INFLIGHT"],
    ["an inflight flag that is not 0 or 1", (r) => (r.bytes[r.entry(0)] = 7), "BAD_INFLIGHT"],
  ] as const satisfies readonly (readonly [string, (r: ReturnType<typeof region>) => void, string])[]) {
    test(`${what}: the queue starts broken with ${code}, nothing is served`, () => {
      const { second, batch } = restartWith(corrupt);
      assert.equal(second.started, true);
      assert.equal(second.brokenBy?.code, code);
      assert.throws(
        () => second.pop(batch),
        (e) => isVirtqueueError(e) && e.code === "BROKEN",
      );
    });
  }

  test("a recorded descriptor of length 0 is refused when resubmitted (ZERO_LENGTH), as on the ring", () => {
    const { second, batch } = restartWith((r) => r.dv.setUint32(r.entry(0) + 20, 0, true));
    const brokenBy = () => second.brokenBy?.code;
    assert.equal(brokenBy(), undefined, "the region adds up");
    assert.throws(
      () => second.pop(batch),
      (e) => isVirtqueueError(e) && e.code === "ZERO_LENGTH",
    );
    assert.equal(brokenBy(), "ZERO_LENGTH");
  });

  test("a region made for fewer descriptors than the ring is refused up front (BAD_QUEUE_SIZE)", () => {
    const memory = makeMemory(SIZE);
    assert.throws(
      () => new PackedQueue({ size: SIZE, memory, addresses: packedAddresses(SIZE), inflight: new PackedInflight(region(4).bytes, 4) }),
      (e) => isVirtqueueError(e) && e.code === "BAD_QUEUE_SIZE",
    );
  });
});
