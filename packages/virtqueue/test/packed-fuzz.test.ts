/**
 * Fuzz of raw packed-ring bytes fed to the device side (fast-check): a descriptor ring (flags
 * biased towards "available in this lap" so that lists get walked), indirect tables, a driver
 * event suppression word and a vring base are laid out at random, then random device calls run —
 * pops, used descriptors, publishes, notification changes, segment walks, restarts — while the
 * "guest" keeps rewriting ring bytes. Invariants: every call returns (every walk is bounded),
 * whatever a pop returns is validated and in bounds, the base stays consistent, and the only
 * errors are typed: guest codes (which break the queue, and only it) or the caller error the test
 * provokes on purpose.
 *
 * CI runs a few thousand cases; `VHOSTKIT_FUZZ_RUNS=1000000` runs a dedicated million (in parts of
 * 50 000 per test, e.g. `VHOSTKIT_FUZZ_RUNS=1000000 bun test --timeout 3600000 test/packed-fuzz.test.ts`).
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { ChainBatch, PackedDescFlag, PackedQueue, isVirtqueueError, packedInFlight, packedVringBaseNum } from "../src/index.js";
import type { VirtqueueErrorCode } from "../src/index.js";
import { assertChain, assertSegments } from "./helpers/batch-checks.js";
import { packedAddresses, putPacked } from "./helpers/packed-ring.js";
import { BUF_A, BUF_B, HOLE, READ_ONLY, REMOTE, makeMemory, ringView } from "./helpers/ring-fixture.js";

const GUEST_CODES = new Set<VirtqueueErrorCode>([
  "AVAIL_OVERRUN",
  "BAD_WRAP",
  "CHAIN_TOO_LONG",
  "ZERO_LENGTH",
  "ADDRESS_WRAP",
  "BAD_ORDER",
  "INDIRECT_NOT_NEGOTIATED",
  "INDIRECT_WITH_NEXT",
  "BAD_INDIRECT_LENGTH",
  "INDIRECT_UNMAPPED",
  "READ_ONLY_BUFFER",
  "BAD_BUFFER_ID",
  "BUFFER_ID_IN_FLIGHT",
]);
const RUNS = Number(process.env.VHOSTKIT_FUZZ_RUNS ?? 5000);
const PART = 50_000;
const MAX_SIZE = 24;
const U64 = 1n << 64n;
const T = 0x4000; // indirect tables at BUF_A + T (+ 0x100 each)
const { AVAIL, USED } = PackedDescFlag;

const addrArb = fc.oneof(
  { arbitrary: fc.integer({ min: 0, max: 0x7fff }).map((o) => BUF_A + BigInt(o)), weight: 8 },
  { arbitrary: fc.integer({ min: 0, max: 64 }).map((o) => BUF_B - BigInt(o)), weight: 2 },
  { arbitrary: fc.integer({ min: 0, max: 3 }).map((k) => BUF_A + BigInt(T + 0x100 * k)), weight: 3 },
  { arbitrary: fc.constantFrom(REMOTE, READ_ONLY, HOLE, U64 - 1n, U64 - 16n, 0n, BUF_B + 0x8000n - 16n), weight: 1 },
  { arbitrary: fc.bigInt({ min: 0n, max: U64 - 1n }), weight: 1 },
);
const lenArb = fc.oneof(
  { arbitrary: fc.integer({ min: 1, max: 80 }), weight: 12 },
  { arbitrary: fc.constantFrom(16, 32, 48, 64, 128, 0), weight: 3 },
  { arbitrary: fc.constantFrom(0xffffffff, 0xfffffff0), weight: 1 },
  { arbitrary: fc.integer({ min: 0, max: 0xffffffff }), weight: 1 },
);
const descArb = fc.record({
  addr: addrArb,
  len: lenArb,
  // -1: a distinct ID (offset-based), else this value.
  id: fc.oneof(
    { arbitrary: fc.constant(-1), weight: 14 },
    { arbitrary: fc.integer({ min: 0, max: MAX_SIZE + 1 }), weight: 2 },
    { arbitrary: fc.integer({ min: 0, max: 0xffff }), weight: 1 },
  ),
  // How the AVAIL/USED bits relate to the lap of the descriptor's offset.
  kind: fc.oneof({ arbitrary: fc.constant("avail"), weight: 24 }, { arbitrary: fc.constantFrom("used", "stale", "other", "raw"), weight: 2 }),
  // NEXT | WRITE | INDIRECT, mostly plain buffers.
  bits: fc.oneof({ arbitrary: fc.constantFrom(0, 2, 0, 2, 1, 3), weight: 8 }, { arbitrary: fc.integer({ min: 0, max: 7 }), weight: 2 }),
  raw: fc.integer({ min: 0, max: 0xffff }),
});
type Desc = typeof descArb extends fc.Arbitrary<infer D> ? D : never;

type Op =
  | { t: "pop"; max: number }
  | { t: "use"; k: number; len: number }
  | { t: "pushUsed" }
  | { t: "publish" }
  | { t: "notify"; on: boolean }
  | { t: "segments"; i: number }
  | { t: "poke"; off: number; value: number }
  | { t: "restart" }
  | { t: "badUsed"; id: number };
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { arbitrary: fc.record({ t: fc.constant("pop" as const), max: fc.integer({ min: 1, max: MAX_SIZE }) }), weight: 6 },
  { arbitrary: fc.record({ t: fc.constant("use" as const), k: fc.integer({ min: 1, max: 4 }), len: fc.integer({ min: 0, max: 0xffffffff }) }), weight: 3 },
  { arbitrary: fc.constant({ t: "pushUsed" as const }), weight: 1 },
  { arbitrary: fc.constant({ t: "publish" as const }), weight: 2 },
  { arbitrary: fc.record({ t: fc.constant("notify" as const), on: fc.boolean() }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant("segments" as const), i: fc.nat() }), weight: 3 },
  { arbitrary: fc.record({ t: fc.constant("poke" as const), off: fc.nat(), value: fc.integer({ min: 0, max: 0xffff }) }), weight: 2 },
  { arbitrary: fc.constant({ t: "restart" as const }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant("badUsed" as const), id: fc.integer({ min: -1, max: MAX_SIZE + 1 }) }), weight: 1 },
);

const caseArb = fc.record({
  size: fc.oneof(fc.integer({ min: 1, max: MAX_SIZE }), fc.constantFrom(1, 2, 3, 5, 8, 16)),
  availAt: fc.nat({ max: MAX_SIZE - 1 }),
  held: fc.oneof({ arbitrary: fc.constant(0), weight: 3 }, { arbitrary: fc.nat({ max: MAX_SIZE }), weight: 1 }),
  /** How many free descriptors the driver made available (the rest is left from the last lap). */
  run: fc.oneof(
    { arbitrary: fc.integer({ min: 1, max: MAX_SIZE }), weight: 6 },
    { arbitrary: fc.constant(MAX_SIZE), weight: 2 },
    { arbitrary: fc.constant(0), weight: 1 },
  ),
  idShift: fc.nat({ max: MAX_SIZE }),
  availWrap: fc.boolean(),
  descs: fc.array(descArb, { minLength: MAX_SIZE, maxLength: MAX_SIZE }),
  table: fc.array(descArb, { minLength: 0, maxLength: 24 }),
  driverEvent: fc.oneof(
    fc.integer({ min: 0, max: 0xffffffff }),
    fc.integer({ min: 0, max: 2 }).map((f) => f << 16),
  ),
  eventIdx: fc.boolean(),
  indirect: fc.boolean(),
  strict: fc.boolean(),
  maxIndirect: fc.integer({ min: 1, max: 16 }),
  capacity: fc.integer({ min: 1, max: MAX_SIZE }),
  ops: fc.array(opArb, { minLength: 6, maxLength: 40, size: "medium" }),
});

/** Flags for descriptor `d` at an offset of lap `w` (the lap the device reads it in). */
function flagsFor(d: Desc, w: number): number {
  const lap = (bit: number) => (bit === 1 ? AVAIL | USED : 0);
  switch (d.kind) {
    case "avail":
      return (w === 1 ? AVAIL : USED) | d.bits;
    case "used":
      return lap(w) | d.bits;
    case "stale":
      return lap(w ^ 1) | d.bits;
    case "other":
      return (w === 1 ? USED : AVAIL) | d.bits;
    default:
      return d.raw;
  }
}

const memory = makeMemory(MAX_SIZE);
const ring = memory.regions[0]!.bytes;
const dv = ringView(memory);
const tableRegion = memory.regions[1]!.bytes;
const tdv = new DataView(tableRegion.buffer);

type Case = typeof caseArb extends fc.Arbitrary<infer C> ? C : never;

/** One fuzz case; returns the number of lists popped and the guest error code that ended it, if any. */
function runCase(c: Case): { lists: number; code: VirtqueueErrorCode | undefined } {
  const size = c.size;
  const a = packedAddresses(size);
  ring.fill(0, 0, 16 * size + 8);
  tableRegion.fill(0, T, T + 4 * 0x100);
  const availIdx = c.availAt % size;
  const w = c.availWrap ? 1 : 0;
  const held = c.held % (size + 1);
  const run = Math.min(c.run, size - held);
  for (let i = 0; i < size; i++) {
    const d = c.descs[i]!;
    const lapW = i >= availIdx ? w : w ^ 1;
    // Past the run the slot still holds the last lap's descriptor (used, or a list member never
    // overwritten), unless the descriptor is one of the hostile kinds.
    const inRun = (i - availIdx + size) % size < run;
    const flags = inRun || d.kind !== "avail" ? flagsFor(d, lapW) : flagsFor({ ...d, kind: d.bits & 1 ? "avail" : "used" }, lapW ^ 1);
    putPacked(dv, 0, i, d.addr, d.len, d.id < 0 ? (i + c.idShift) % size : d.id, flags);
  }
  c.table.forEach((d, i) => putPacked(tdv, T, i, d.addr, d.len, d.id, d.raw));
  dv.setUint32(Number(a.avail), c.driverEvent >>> 0, true);
  let usedIdx = availIdx - held;
  let usedWrap = c.availWrap;
  if (usedIdx < 0) {
    usedIdx += size;
    usedWrap = !usedWrap;
  }
  const base = { availIdx, availWrap: c.availWrap, usedIdx, usedWrap };
  const queue = new PackedQueue({
    size,
    memory,
    addresses: a,
    eventIdx: c.eventIdx,
    indirect: c.indirect,
    requireReadableFirst: c.strict,
    maxIndirectLength: c.maxIndirect,
  });
  queue.start(packedVringBaseNum(base));
  const batch = new ChainBatch(c.capacity, 2);
  const popped: number[] = []; // IDs the device holds, not used yet
  let lists = 0;
  for (const op of c.ops) {
    try {
      switch (op.t) {
        case "pop": {
          const n = queue.pop(batch, op.max);
          assert.ok(n <= c.capacity && n <= op.max && n <= size);
          lists += n;
          for (let i = 0; i < n; i++) {
            const id = batch.head(i);
            assert.ok(id < size && !popped.includes(id), `id ${id} fresh and in range`);
            popped.push(id);
            assertChain(batch, i, c.strict, Math.max(size, c.maxIndirect));
          }
          break;
        }
        case "use":
          for (const id of popped.splice(0, op.k)) queue.addUsed(id, op.len);
          break;
        case "pushUsed":
          if (batch.count > 0 && batch.heads.subarray(0, batch.count).every((id) => popped.includes(id))) {
            queue.pushUsed(batch);
            for (const id of batch.heads.subarray(0, batch.count)) popped.splice(popped.indexOf(id), 1);
          }
          break;
        case "publish":
          queue.publishUsed();
          break;
        case "notify":
          if (op.on) queue.enableNotification();
          else queue.disableNotification();
          break;
        case "segments": {
          if (batch.count === 0) break;
          assertSegments(queue, batch, op.i % batch.count);
          break;
        }
        case "poke": // the guest rewrites the ring (or its event structure) meanwhile
          dv.setUint16((op.off % ((16 * size + 8) >>> 1)) * 2, op.value, true);
          break;
        case "restart":
          queue.start(queue.stop());
          break;
        case "badUsed":
          if (popped.includes(op.id)) break;
          assert.throws(
            () => queue.addUsed(op.id, 0),
            (e) => isVirtqueueError(e) && e.code === "BAD_USED_ID",
          );
          assert.equal(queue.brokenBy, undefined, "a caller error does not break the queue");
          break;
      }
      const inFlight = packedInFlight(queue.ringBase, size);
      assert.ok(inFlight >= 0 && inFlight <= size, `in flight ${inFlight}`);
    } catch (e) {
      if (!isVirtqueueError(e)) throw e;
      assert.ok(GUEST_CODES.has(e.code), `unexpected code ${e.code}: ${e.message}`);
      assert.equal(queue.brokenBy, e, "the guest error thrown is the one that broke the queue");
      assert.equal(batch.count === 0 || op.t === "segments", true, "a failed pop leaves an empty batch");
      return { lists, code: e.code };
    }
  }
  return { lists, code: undefined };
}

describe("packed fuzz: raw ring bytes against the device", () => {
  const parts = Math.max(1, Math.ceil(RUNS / PART));
  for (let part = 0; part < parts; part++) {
    const runs = Math.min(PART, RUNS - part * PART);
    test(`only typed errors; every walk bounded; pops validated (${runs} cases, part ${part + 1}/${parts})`, () => {
      let lists = 0;
      const codes = new Set<VirtqueueErrorCode>();
      fc.assert(
        fc.property(caseArb, (c) => {
          const r = runCase(c);
          lists += r.lists;
          if (r.code !== undefined) codes.add(r.code);
        }),
        { numRuns: runs },
      );
      assert.ok(lists > runs / 4, `lists were walked (${lists} in ${runs} cases)`);
      assert.ok(codes.size >= Math.min(8, runs / 100), `guest errors of many kinds (${[...codes].join(", ")})`);
      if (process.env.VHOSTKIT_FUZZ_VERBOSE) console.log(`lists ${lists}, codes ${[...codes].join(" ")}`);
    });
  }
});
