/**
 * Property test (fast-check) of packed inflight tracking (docs/virtqueue.md#packed-inflight-tracking):
 * a packed driver and a tracking device queue over one ring and one inflight region run random
 * steps — lists of 1–3 descriptors (indirect ones too) made available, pops of random size, random
 * completions in any order, publications, collections — and the device process "dies" at random
 * points: between steps, just before a used batch's flags reach the ring, just after they did,
 * or while recording a list. A new device queue then starts on the same ring and region at the used
 * position (what vhostkit's front-end sends), as many times as the run asks. Invariant: every list
 * the driver made available comes back to it exactly once, and the ring ends all free with both
 * sides at the same positions. A region with random bytes overwritten (the front-end owns that
 * memory) only ever yields typed errors — the ring broken with `BAD_INFLIGHT` at start, or a guest
 * error for a resubmitted list — and every walk ends.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { ChainBatch, PackedInflight, PackedQueue, isVirtqueueError, packedInflightQueueBytes } from "../src/index.js";
import { PackedDriver } from "../src/driver/index.js";
import { packedAddresses } from "./helpers/packed-ring.js";
import { BUF_A, BUF_B as TABLES, makeMemory } from "./helpers/ring-fixture.js";

type Step =
  | { t: "add"; n: number; ind: boolean }
  | { t: "pop"; max: number }
  | { t: "complete"; pick: number }
  | { t: "publishUsed" }
  | { t: "collect" }
  | { t: "die"; how: "between" | "beforeFlags" | "afterFlags" | "recording" };

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  { arbitrary: fc.record({ t: fc.constant("add" as const), n: fc.integer({ min: 1, max: 3 }), ind: fc.boolean() }), weight: 5 },
  { arbitrary: fc.record({ t: fc.constant("pop" as const), max: fc.integer({ min: 1, max: 6 }) }), weight: 4 },
  { arbitrary: fc.record({ t: fc.constant("complete" as const), pick: fc.nat(1000) }), weight: 5 },
  { arbitrary: fc.constant({ t: "publishUsed" as const }), weight: 2 },
  { arbitrary: fc.constant({ t: "collect" as const }), weight: 2 },
  { arbitrary: fc.record({ t: fc.constant("die" as const), how: fc.constantFrom("between", "beforeFlags", "afterFlags", "recording") }), weight: 1 },
);

class Killed extends Error {}

/** A region that kills the process at the step `when()` names. */
class Mortal extends PackedInflight {
  when: Step["t"] | "beforeFlags" | "afterFlags" | "recording" | undefined;
  override record(id: number, ring32: Int32Array, pos: number, count: number, size: number): void {
    if (this.when === "recording") throw new Killed();
    super.record(id, ring32, pos, count, size);
  }
  override beforePublish(usedIdx: number, usedWrap: number): void {
    super.beforePublish(usedIdx, usedWrap);
    if (this.when === "beforeFlags") throw new Killed();
  }
  override afterPublish(): void {
    if (this.when === "afterFlags") throw new Killed();
    super.afterPublish();
  }
}

function run(size: number, steps: readonly Step[], corrupt: readonly (readonly [number, number])[] = []): void {
  const memory = makeMemory(Math.max(size, 8));
  const addresses = packedAddresses(size);
  const region = new Uint8Array(packedInflightQueueBytes(size));
  const driver = new PackedDriver<number>({ size, memory, addresses, indirect: true });
  const batch = new ChainBatch(size);
  let inflight = new Mortal(region, size);
  const startDevice = (base: number): PackedQueue => {
    inflight = new Mortal(region, size);
    const q = new PackedQueue({ size, memory, addresses, indirect: true, inflight });
    q.start(base);
    return q;
  };
  let queue = startDevice(0x8000_8000);
  const held: number[] = []; // buffer IDs popped by the current device, not yet used
  const got = new Map<number, number>(); // token -> times collected
  let made = 0;
  const collect = (): void => {
    for (const u of driver.collectUsed()) got.set(u.token!, (got.get(u.token!) ?? 0) + 1);
  };
  const restart = (): void => {
    collect();
    held.length = 0;
    const u = driver.lastUsedIndex;
    queue = startDevice((u | (u << 16)) >>> 0);
    assert.equal(queue.brokenBy, undefined);
  };
  const pop = (max: number): void => {
    const n = queue.pop(batch, max);
    for (let c = 0; c < n; c++) held.push(batch.heads[c]!);
  };
  for (const s of steps) {
    switch (s.t) {
      case "add": {
        if (driver.numFree < (s.ind ? 1 : s.n)) break;
        const bufs = Array.from({ length: s.n }, (_, j) => ({ addr: BUF_A + BigInt(64 * (made % 256) + 16 * j), len: 16 }));
        if (s.ind) driver.addIndirect(bufs, [], TABLES + BigInt(64 * (made % 256)), made);
        else driver.add(bufs, [], made);
        made++;
        driver.publish();
        break;
      }
      case "pop":
        pop(s.max);
        break;
      case "complete":
        if (held.length > 0) queue.addUsed(held.splice(s.pick % held.length, 1)[0]!, 0);
        break;
      case "publishUsed":
        queue.publishUsed();
        break;
      case "collect":
        collect();
        break;
      case "die":
        if (s.how === "between") {
          restart();
          break;
        }
        inflight.when = s.how;
        try {
          if (s.how === "recording") pop(size);
          else {
            if (held.length > 0) queue.addUsed(held.shift()!, 0);
            queue.publishUsed();
          }
        } catch (e) {
          if (!(e instanceof Killed)) throw e;
        }
        inflight.when = undefined;
        restart();
        break;
    }
  }
  if (corrupt.length > 0) {
    for (const [off, value] of corrupt) region[off % region.length] = value;
    const u = driver.lastUsedIndex;
    inflight = new Mortal(region, size);
    const q = new PackedQueue({ size, memory, addresses, indirect: true, inflight });
    q.start((u | (u << 16)) >>> 0);
    for (let k = 0; k < 2 * size + 2; k++) {
      try {
        if (q.pop(batch) === 0) break;
        q.pushUsed(batch);
        q.publishUsed();
      } catch (e) {
        assert.ok(isVirtqueueError(e), String(e));
        break;
      }
    }
    return;
  }
  // Drain: the last device serves everything left, the driver collects it.
  for (let guard = 0; guard < 4 * size + 8; guard++) {
    pop(size);
    while (held.length > 0) queue.addUsed(held.shift()!, 0);
    queue.publishUsed();
    collect();
    if (got.size === made && driver.numFree === size) break;
  }
  for (let t = 0; t < made; t++) assert.equal(got.get(t), 1, `list ${t} came back ${got.get(t) ?? 0} times`);
  assert.equal(driver.numFree, size);
  assert.equal(queue.stop(), (driver.availIndex | (driver.lastUsedIndex << 16)) >>> 0);
}

test("packed inflight: every list comes back exactly once across random deaths of the device, batches and lists left halfway included", () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 19 }), fc.array(stepArb, { minLength: 1, maxLength: 80 }), (size, steps) => run(size, steps)),
    { numRuns: Number(process.env["VHOSTKIT_PROPERTY_RUNS"] ?? 800) },
  );
});

test("packed inflight: a region with random bytes overwritten yields only typed errors, every walk bounded", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 19 }),
      fc.array(stepArb, { minLength: 1, maxLength: 40 }),
      fc.array(fc.tuple(fc.nat(2000), fc.nat(255)), { minLength: 1, maxLength: 8 }),
      (size, steps, corrupt) => run(size, steps, corrupt),
    ),
    { numRuns: Number(process.env["VHOSTKIT_PROPERTY_RUNS"] ?? 800) },
  );
});
