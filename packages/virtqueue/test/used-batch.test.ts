/**
 * `collectUsedInto` with a reusable `UsedBatch` (split and packed drivers): the same buffers, in
 * the same order, as `collectUsed`; capacity and `max` bound a round and the rest waits for the
 * next; `take` leaves no token behind; a bad used element keeps what came before it.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { isVirtqueueError, type DeviceQueue } from "../src/index.js";
import { UsedBatch } from "../src/driver/index.js";
import type { ArrayGuestMemory } from "../src/testing/index.js";
import { packedAddresses, packedPair, putPacked } from "./helpers/packed-ring.js";
import { BUF_A, pair, ringAddresses, ringView } from "./helpers/ring-fixture.js";

/**
 * Writes a third used element by hand after two (one used one-descriptor buffer each), returning
 * `id` again, and publishes it: split, used ring slot 2 and used.idx 3; packed, descriptor 2 marked
 * used in the first lap.
 */
function forgeUsed(layout: string, memory: ArrayGuestMemory, id: number): void {
  const dv = ringView(memory);
  if (layout === "split") {
    const used = Number(ringAddresses(16).used);
    dv.setUint32(used + 4 + 8 * 2, id, true);
    dv.setUint32(used + 4 + 8 * 2 + 4, 7, true);
    dv.setUint16(used + 2, 3, true);
  } else putPacked(dv, Number(packedAddresses(16).desc), 2, 0n, 7, id, (1 << 7) | (1 << 15) | 2);
}

/** The driver calls both layouts share. */
interface Driver {
  add(readable: { addr: bigint; len: number }[], writable: { addr: bigint; len: number }[], token?: string): number;
  publish(): boolean;
  collectUsed(max?: number): { id: number; len: number; token: string | undefined }[];
  collectUsedInto(batch: UsedBatch<string>, max?: number): number;
  readonly numFree: number;
}

const layouts: [string, () => { driver: Driver; queue: DeviceQueue; batch: import("../src/index.js").ChainBatch; size: number; memory: ArrayGuestMemory }][] = [
  ["split", () => pair({ size: 16 })],
  ["packed", () => packedPair({ size: 16 })],
];

/** Adds `n` one-buffer chains with tokens `t<first + k>`; the device pops them all. Returns their ids in order. */
function offer(driver: Driver, queue: DeviceQueue, batch: import("../src/index.js").ChainBatch, first: number, n: number): number[] {
  const ids: number[] = [];
  for (let k = 0; k < n; k++) ids.push(driver.add([], [{ addr: BUF_A + BigInt(64 * (first + k)), len: 64 }], `t${first + k}`));
  driver.publish();
  assert.equal(queue.pop(batch), n);
  return ids;
}

for (const [layout, make] of layouts) {
  describe(`UsedBatch, ${layout} driver`, () => {
    test("rounds of completions in the device's order, the batch reused, nothing left behind", () => {
      const { driver, queue, batch, size } = make();
      const used = new UsedBatch<string>(size);
      let next = 0;
      for (let round = 0; round < 40; round++) {
        const n = 1 + (round % 7);
        offer(driver, queue, batch, next, n);
        // The device completes them in reverse, each with its own length.
        const heads = Array.from({ length: n }, (_, i) => batch.head(i)).reverse();
        heads.forEach((h, i) => queue.addUsed(h, 10 + i + round));
        queue.publishUsed();
        assert.equal(driver.collectUsedInto(used), n);
        assert.equal(used.count, n);
        for (let i = 0; i < n; i++) {
          assert.equal(used.id[i], heads[i]);
          assert.equal(used.len[i], 10 + i + round);
          assert.equal(used.take(i), `t${next + n - 1 - i}`);
          assert.equal(used.token[i], undefined, "take forgets the token");
        }
        next += n;
        assert.equal(driver.numFree, size, "every descriptor back on the free list");
      }
      assert.equal(driver.collectUsedInto(used), 0);
      assert.equal(used.count, 0);
    });

    test("capacity and max bound a round; the rest comes in the next, as collectUsed gives it", () => {
      const { driver, queue, batch } = make();
      offer(driver, queue, batch, 0, 10);
      for (let i = 0; i < 10; i++) queue.addUsed(batch.head(i), i);
      queue.publishUsed();
      const small = new UsedBatch<string>(4);
      assert.equal(driver.collectUsedInto(small), 4);
      assert.deepEqual([...small.token.slice(0, 4)], ["t0", "t1", "t2", "t3"]);
      assert.equal(driver.collectUsedInto(small, 2), 2);
      assert.deepEqual([...small.token.slice(0, 2)], ["t4", "t5"]);
      small.clear();
      assert.equal(small.count, 0);
      assert.deepEqual([...small.token], [undefined, undefined, "t2", "t3"], "clear releases the tokens of the current round only");
      assert.deepEqual(
        driver.collectUsed().map((u) => u.token),
        ["t6", "t7", "t8", "t9"],
      );
    });

    test("a used id that is not in flight throws, and what came before it stays in the batch", () => {
      const { driver, queue, batch, size, memory } = make();
      offer(driver, queue, batch, 0, 2);
      queue.addUsed(batch.head(0), 5);
      queue.publishUsed();
      const used = new UsedBatch<string>(size);
      assert.equal(driver.collectUsedInto(used), 1);
      // The device returns the second, then hands back the first again (forged: a device queue refuses it).
      queue.addUsed(batch.head(1), 6);
      queue.publishUsed();
      forgeUsed(layout, memory, batch.head(0));
      assert.throws(
        () => driver.collectUsedInto(used),
        (e) => isVirtqueueError(e) && e.code === "BAD_USED_ID",
      );
      assert.equal(used.count, 1);
      assert.equal(used.take(0), "t1");
      assert.equal(used.len[0], 6);
    });
  });
}

test("UsedBatch refuses a capacity outside 1..32768", () => {
  for (const bad of [0, -1, 1.5, 32769, Number.NaN]) assert.throws(() => new UsedBatch(bad), RangeError, String(bad));
  assert.equal(new UsedBatch(32768).capacity, 32768);
});
