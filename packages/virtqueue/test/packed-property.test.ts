/**
 * Property tests (fast-check): the packed driver and the packed device driven against each other
 * with random lists (direct and indirect), queue sizes (powers of two or not, 1..257), start
 * positions and wrap counters, out-of-order completion, restarts from GET_VRING_BASE, and
 * interleaved notification changes on both sides. Invariants: every buffer comes back exactly once
 * with the length the device wrote; no wake-up is lost (a side that re-armed notifications and saw
 * nothing is notified by the other side's next publish); a side that disabled notifications gets
 * none; the ring drains back to all-free with both positions equal. With random corruption of the
 * ring bytes, only typed errors escape from either side.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { ChainBatch, PackedQueue, isVirtqueueError, packedInFlight } from "../src/index.js";
import { PackedDriver } from "../src/driver/index.js";
import { packedAddresses } from "./helpers/packed-ring.js";
import { BUF_A, BUF_B, BUF_B as TABLES, makeMemory } from "./helpers/ring-fixture.js";

type Cmd =
  | { t: "add"; nR: number; nW: number; ind: boolean; cross: boolean }
  | { t: "publish" }
  | { t: "pop"; max: number }
  | { t: "complete"; k: number; pick: number; short: boolean }
  | { t: "publishUsed" }
  | { t: "collect"; max: number }
  | { t: "deviceNotify"; on: boolean }
  | { t: "driverNotify"; on: boolean }
  | { t: "restart"; fresh: boolean }
  | { t: "corrupt"; off: number; value: number };

const cmdArb = (corrupt: boolean): fc.Arbitrary<Cmd> =>
  fc.oneof(
    {
      arbitrary: fc.record({
        t: fc.constant("add" as const),
        nR: fc.integer({ min: 0, max: 3 }),
        nW: fc.integer({ min: 0, max: 3 }),
        ind: fc.boolean(),
        cross: fc.boolean(),
      }),
      weight: 6,
    },
    { arbitrary: fc.constant({ t: "publish" as const }), weight: 3 },
    { arbitrary: fc.record({ t: fc.constant("pop" as const), max: fc.integer({ min: 1, max: 9 }) }), weight: 3 },
    { arbitrary: fc.record({ t: fc.constant("complete" as const), k: fc.integer({ min: 1, max: 6 }), pick: fc.nat(), short: fc.boolean() }), weight: 3 },
    { arbitrary: fc.constant({ t: "publishUsed" as const }), weight: 2 },
    { arbitrary: fc.record({ t: fc.constant("collect" as const), max: fc.integer({ min: 1, max: 300 }) }), weight: 2 },
    { arbitrary: fc.record({ t: fc.constant("deviceNotify" as const), on: fc.boolean() }), weight: 2 },
    { arbitrary: fc.record({ t: fc.constant("driverNotify" as const), on: fc.boolean() }), weight: 2 },
    { arbitrary: fc.record({ t: fc.constant("restart" as const), fresh: fc.boolean() }), weight: 1 },
    { arbitrary: fc.record({ t: fc.constant("corrupt" as const), off: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }), weight: corrupt ? 1 : 0 },
  );

const setupArb = fc.record({
  size: fc.oneof(fc.integer({ min: 1, max: 12 }), fc.constantFrom(16, 31, 33, 64, 100, 257)),
  startFrac: fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
  startWrap: fc.boolean(),
  eventIdx: fc.boolean(),
});

const memory = makeMemory(512);
const TABLE_SLOT = 0x60n; // 6 entries of 16 bytes

/** One random run; returns how many buffers went round. */
function run(s: { size: number; startFrac: number; startWrap: boolean; eventIdx: boolean }, cmds: Cmd[]): number {
  const { size, eventIdx } = s;
  const start = Math.floor(s.startFrac * size) | (s.startWrap ? 0x8000 : 0);
  const addresses = packedAddresses(size);
  const ring = memory.regions[0]!.bytes;
  const opts = { size, memory, addresses, eventIdx, indirect: true };
  const driver = new PackedDriver<string>({ ...opts, start });
  let queue = new PackedQueue(opts);
  queue.start((start | (start << 16)) >>> 0);
  const batch = new ChainBatch(size);
  const inDevice: { id: number; wbytes: number }[] = [];
  const outstanding = new Map<string, number>(); // token -> expected len (-1 until used)
  const byId = new Map<number, string>();
  const freeSlots = Array.from({ length: size }, (_, i) => i);
  const slotOf = new Map<string, number>();
  let serial = 0;
  let returned = 0;
  let corrupted = false;
  let deviceAsleep = false; // re-armed kicks and saw nothing: the next publish must kick
  let driverAsleep = false; // re-armed interrupts and saw nothing: the next used publish must interrupt
  let deviceOff = false; // the device disabled kicks
  let driverOff = false; // the driver disabled interrupts
  const collect = (max: number) => {
    for (const u of driver.collectUsed(max)) {
      const tok = u.token!;
      if (!corrupted) {
        assert.equal(u.len, outstanding.get(tok), `len of ${tok}`);
        assert.ok(outstanding.delete(tok), `${tok} returned once`);
      }
      const slot = slotOf.get(tok);
      if (slot !== undefined) freeSlots.push(slot), slotOf.delete(tok);
      returned++;
    }
  };
  let pendingAdds = 0; // added, not yet published
  let queuedUsed = 0; // used, not yet published
  try {
    for (const c of cmds) {
      switch (c.t) {
        case "add": {
          if (c.nR + c.nW === 0) break;
          const token = `t${serial++}`;
          const at = (n: number, off: bigint) => Array.from({ length: n }, (_, i) => ({ addr: (c.cross ? BUF_B - 16n : BUF_A) + off + BigInt(i * 8), len: 8 }));
          const need = c.ind && freeSlots.length > 0 ? 1 : c.nR + c.nW;
          if (driver.numFree < need) {
            assert.throws(
              () => driver.add(at(c.nR, 0n), at(c.nW, 0x40n)),
              (e) => isVirtqueueError(e) && (e.code === "RING_FULL" || (corrupted && e.code === "BROKEN")),
            );
            break;
          }
          let id: number;
          if (c.ind && freeSlots.length > 0) {
            const slot = freeSlots.pop()!;
            id = driver.addIndirect(at(c.nR, 0n), at(c.nW, 0x40n), TABLES + 0x1000n + BigInt(slot) * TABLE_SLOT, token);
            slotOf.set(token, slot);
          } else {
            id = driver.add(at(c.nR, 0n), at(c.nW, 0x40n), token);
          }
          byId.set(id, token);
          outstanding.set(token, -1);
          pendingAdds++;
          break;
        }
        case "publish": {
          const kick = driver.publish();
          if (!corrupted && pendingAdds > 0) {
            if (deviceAsleep) assert.equal(kick, true, "lost kick: the device re-armed and the driver published");
            if (deviceOff) assert.equal(kick, false, "kick while the device disabled them");
          }
          pendingAdds = 0;
          if (kick) deviceAsleep = false;
          break;
        }
        case "pop": {
          const n = queue.pop(batch, c.max);
          for (let i = 0; i < n; i++) inDevice.push({ id: batch.head(i), wbytes: batch.writableBytes[i]! });
          if (!corrupted) {
            for (let i = 0; i < n; i++) assert.ok(byId.has(batch.head(i)), "a buffer the driver added");
            const b = queue.ringBase;
            const inFlight = packedInFlight(b, size);
            assert.ok(inFlight >= 0 && inFlight <= size);
          }
          break;
        }
        case "complete": {
          for (let j = 0; j < c.k && inDevice.length > 0; j++) {
            const [ch] = inDevice.splice(c.pick % inDevice.length, 1);
            const len = c.short ? Math.min(ch!.wbytes, 3) : ch!.wbytes;
            queue.addUsed(ch!.id, len);
            queuedUsed++;
            const tok = byId.get(ch!.id);
            if (tok !== undefined && !corrupted) outstanding.set(tok, len);
          }
          break;
        }
        case "publishUsed": {
          const notify = queue.publishUsed();
          if (!corrupted && queuedUsed > 0) {
            if (driverAsleep) assert.equal(notify, true, "lost interrupt: the driver re-armed and the device published");
            if (driverOff) assert.equal(notify, false, "interrupt while the driver disabled them");
          }
          queuedUsed = 0;
          if (notify) driverAsleep = false;
          break;
        }
        case "collect":
          collect(c.max);
          break;
        case "deviceNotify":
          if (c.on) {
            const more = queue.enableNotification();
            deviceAsleep = !more;
            deviceOff = false;
          } else {
            queue.disableNotification();
            deviceAsleep = false;
            deviceOff = true;
          }
          break;
        case "driverNotify":
          if (c.on) {
            driverAsleep = !driver.enableInterrupts();
            driverOff = false;
          } else {
            driver.disableInterrupts();
            driverAsleep = false;
            driverOff = true;
          }
          break;
        case "restart": {
          const base = queue.stop(); // GET_VRING_BASE: queued used descriptors are published, no decision
          queuedUsed = 0;
          driverAsleep = false;
          deviceAsleep = false;
          // A new back-end forgets the IDs it holds, so only when it holds none; the device area
          // in memory keeps its last value either way.
          if (c.fresh && inDevice.length === 0) queue = new PackedQueue(opts);
          queue.start(base);
          break;
        }
        case "corrupt":
          ring[c.off % (16 * size + 8)] = c.value;
          corrupted = true;
          break;
      }
    }
    if (corrupted) return returned;
    // Drain: everything added comes back exactly once, and both positions meet.
    driver.publish();
    for (let guard = 0; guard < 4 * size + 4 && outstanding.size > 0; guard++) {
      const n = queue.pop(batch);
      for (let i = 0; i < n; i++) inDevice.push({ id: batch.head(i), wbytes: batch.writableBytes[i]! });
      for (const ch of inDevice.splice(0)) {
        queue.addUsed(ch.id, ch.wbytes);
        outstanding.set(byId.get(ch.id)!, ch.wbytes);
      }
      queue.publishUsed();
      collect(size);
    }
    assert.equal(outstanding.size, 0, "all buffers returned");
    assert.equal(driver.numFree, size);
    const b = queue.ringBase;
    assert.equal(b.availIdx | (b.availWrap ? 0x8000 : 0), driver.availIndex);
    assert.equal(b.usedIdx | (b.usedWrap ? 0x8000 : 0), driver.lastUsedIndex);
    assert.equal(driver.availIndex, driver.lastUsedIndex);
  } catch (e) {
    if (!corrupted) throw e;
    assert.ok(isVirtqueueError(e), `untyped error after corruption: ${String(e)}`);
  }
  return returned;
}

describe("packed property: driver <-> device", () => {
  test("buffers come back once with their lengths; no lost kick or interrupt; disabled means silent; drains", () => {
    let returned = 0;
    fc.assert(
      fc.property(setupArb, fc.array(cmdArb(false), { minLength: 10, maxLength: 120, size: "large" }), (s, cmds) => {
        returned += run(s, cmds);
      }),
      { numRuns: 2000 },
    );
    assert.ok(returned > 10_000, `buffers went round (${returned})`);
  });

  test("with random ring corruption only typed errors escape, from either side", () => {
    fc.assert(
      fc.property(setupArb, fc.array(cmdArb(true), { minLength: 10, maxLength: 120, size: "large" }), (s, cmds) => {
        run(s, cmds);
      }),
      { numRuns: 1000 },
    );
  });
});
