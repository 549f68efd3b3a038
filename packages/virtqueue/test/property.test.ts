/**
 * Hostile-guest property tests (fast-check): random descriptor tables, avail rings and indirect
 * tables, and random driver/device call sequences with random corruption. Invariants: every call
 * terminates, everything a successful pop returns is in bounds and validated, and the only errors
 * are typed VirtqueueErrors (guest codes break the queue). 100k + 4k runs.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { ChainBatch, SplitQueue, isVirtqueueError, readChain, writeChain } from "../src/index.js";
import type { VirtqueueErrorCode } from "../src/index.js";
import { BUF_A, BUF_B, HOLE, READ_ONLY, REMOTE, makeMemory, pair, putDesc, ringAddresses, ringView } from "./helpers/ring-fixture.js";

const GUEST_CODES = new Set<VirtqueueErrorCode>([
  "AVAIL_OVERRUN",
  "BAD_HEAD",
  "BAD_NEXT",
  "CHAIN_TOO_LONG",
  "ZERO_LENGTH",
  "ADDRESS_WRAP",
  "BAD_ORDER",
  "INDIRECT_NOT_NEGOTIATED",
  "INDIRECT_WITH_NEXT",
  "NESTED_INDIRECT",
  "BAD_INDIRECT_LENGTH",
  "INDIRECT_UNMAPPED",
  "READ_ONLY_BUFFER",
]);
const U64 = 1n << 64n;
const MAX_SIZE = 16;
const MAX_INDIRECT = 8;
const TABLE = 0x4000n; // indirect tables live at BUF_A + TABLE + 0x100·k

const addrArb = fc.oneof(
  fc.integer({ min: 0, max: 0x7fff }).map((o) => BUF_A + BigInt(o)),
  fc.integer({ min: 0, max: 64 }).map((o) => BUF_B - BigInt(o)),
  fc.integer({ min: 0, max: 3 }).map((k) => BUF_A + TABLE + 0x100n * BigInt(k)),
  fc.constantFrom(REMOTE, READ_ONLY, HOLE, U64 - 1n, U64 - 16n, 0n),
  fc.bigInt({ min: 0n, max: U64 - 1n }),
);
const lenArb = fc.oneof(fc.integer({ min: 0, max: 80 }), fc.constantFrom(16, 32, 48, 128, 0xffffffff, 0x80000000), fc.integer({ min: 0, max: 0xffffffff }));
const descArb = fc.record({ addr: addrArb, len: lenArb, flags: fc.integer({ min: 0, max: 15 }), next: fc.integer({ min: 0, max: MAX_SIZE + 1 }) });

const caseArb = fc.record({
  sizeLog: fc.integer({ min: 0, max: 4 }),
  descs: fc.array(descArb, { minLength: MAX_SIZE, maxLength: MAX_SIZE }),
  table: fc.array(descArb, { minLength: 0, maxLength: 4 * 16 }),
  ring: fc.array(fc.integer({ min: 0, max: MAX_SIZE + 1 }), { minLength: MAX_SIZE, maxLength: MAX_SIZE }),
  base: fc.oneof(fc.integer({ min: 0, max: 0xffff }), fc.constantFrom(0, 0xfffe, 0xffff)),
  delta: fc.oneof(fc.integer({ min: 0, max: MAX_SIZE + 2 }), fc.integer({ min: 0, max: 0xffff })),
  capacity: fc.integer({ min: 1, max: MAX_SIZE }),
  indirect: fc.boolean(),
  eventIdx: fc.boolean(),
  strict: fc.boolean(),
});

function checkError(e: unknown, queue: SplitQueue): void {
  if (!isVirtqueueError(e)) throw e;
  assert.ok(GUEST_CODES.has(e.code), `unexpected code ${e.code}`);
  assert.equal(queue.brokenBy, e, "the guest error thrown is the one that broke the queue");
}

describe("property: random rings", () => {
  // One memory for every run (cleared between runs): allocation would dominate otherwise.
  const memory = makeMemory(MAX_SIZE);
  const ring = memory.regions[0]!.bytes;
  const tableRegion = memory.regions[1]!.bytes;
  const dv = ringView(memory);
  const tdv = new DataView(tableRegion.buffer);

  // 100k runs in ten parts (each well under the 5 s per-test limit of `bun test`).
  for (let part = 0; part < 10; part++)
    test(`pop terminates; results are validated and in bounds; only typed guest errors (part ${part + 1}/10)`, () => {
      let popped = 0;
      let failed = 0;
      fc.assert(
        fc.property(caseArb, (c) => {
          const size = 1 << c.sizeLog;
          const a = ringAddresses(size);
          ring.fill(0);
          tableRegion.fill(0, Number(TABLE), Number(TABLE) + 4 * 0x100);
          for (let i = 0; i < size; i++) {
            const d = c.descs[i]!;
            putDesc(dv, Number(a.desc), i, d.addr, d.len, d.flags, d.next % (size + 2));
            dv.setUint16(Number(a.avail) + 4 + 2 * i, c.ring[i]! % (size + 2), true);
          }
          c.table.forEach((d, i) => putDesc(tdv, Number(TABLE), i, d.addr, d.len, d.flags, d.next % 10));
          dv.setUint16(Number(a.avail) + 2, (c.base + c.delta) & 0xffff, true);
          const queue = new SplitQueue({
            size,
            memory,
            addresses: a,
            indirect: c.indirect,
            eventIdx: c.eventIdx,
            requireReadableFirst: c.strict,
            maxIndirectLength: MAX_INDIRECT,
          });
          queue.start(c.base);
          const batch = new ChainBatch(c.capacity, 2);
          try {
            for (let guard = 0; guard <= size + 1; guard++) {
              const n = queue.pop(batch);
              assert.ok(n <= c.capacity && n <= size);
              if (n === 0) break;
              popped += n;
              for (let i = 0; i < n; i++) {
                assert.ok(batch.head(i) < size);
                const count = batch.descriptorCount(i);
                assert.ok(count >= 1 && count <= size + MAX_INDIRECT, `count ${count}`);
                let r = 0;
                let w = 0;
                let seenW = false;
                for (let j = batch.starts[i]!; j < batch.starts[i + 1]!; j++) {
                  const len = batch.length(j);
                  assert.ok(len >= 1);
                  assert.ok(batch.address(j) + BigInt(len) <= U64);
                  if (batch.isWritable(j)) (w += len), (seenW = true);
                  else {
                    assert.ok(!(c.strict && seenW), "readable after writable");
                    r += len;
                  }
                }
                assert.equal(batch.readableBytes[i], r);
                assert.equal(batch.writableBytes[i], w);
                assert.ok(r + w <= 2 ** 32);
                // Segments: cover exactly the descriptors, each >= 1 byte, host views exact.
                const cur = queue.segments(batch, i);
                let total = 0;
                let segs = 0;
                while (cur.next()) {
                  assert.ok(cur.len >= 1);
                  if (cur.kind === "host") assert.equal(cur.bytes.length, cur.len);
                  total += cur.len;
                  assert.ok(++segs <= 2 * count + 4, "segment walk bounded");
                }
                assert.equal(total, r + w);
              }
              queue.pushUsed(batch);
              queue.publishUsed();
            }
          } catch (e) {
            failed++;
            checkError(e, queue);
          }
        }),
        { numRuns: 10_000 },
      );
      assert.ok(popped > 0 && failed > 0, `both outcomes exercised (popped ${popped}, failed ${failed})`);
    });
});

type Cmd =
  | { t: "add"; nR: number; nW: number; ind: boolean; cross: boolean }
  | { t: "publish" }
  | { t: "pop"; max: number }
  | { t: "complete"; k: number; io: boolean }
  | { t: "publishUsed" }
  | { t: "collect" }
  | { t: "restart" }
  | { t: "notify"; on: boolean }
  | { t: "corrupt"; off: number; value: number };

const cmdArb: fc.Arbitrary<Cmd> = fc.oneof(
  {
    arbitrary: fc.record({
      t: fc.constant("add" as const),
      nR: fc.integer({ min: 0, max: 3 }),
      nW: fc.integer({ min: 0, max: 3 }),
      ind: fc.boolean(),
      cross: fc.boolean(),
    }),
    weight: 5,
  },
  { arbitrary: fc.constant({ t: "publish" as const }), weight: 3 },
  { arbitrary: fc.record({ t: fc.constant("pop" as const), max: fc.integer({ min: 1, max: 8 }) }), weight: 3 },
  { arbitrary: fc.record({ t: fc.constant("complete" as const), k: fc.integer({ min: 1, max: 8 }), io: fc.boolean() }), weight: 3 },
  { arbitrary: fc.constant({ t: "publishUsed" as const }), weight: 2 },
  { arbitrary: fc.constant({ t: "collect" as const }), weight: 2 },
  { arbitrary: fc.constant({ t: "restart" as const }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant("notify" as const), on: fc.boolean() }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant("corrupt" as const), off: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }), weight: 1 },
);

describe("property: random driver/device call sequences", () => {
  // 10 parts of 10 000 sequences: 100 000 per run, each part well inside a test's time limit.
  for (let part = 0; part < 10; part++)
    test(`tokens come back exactly once with the right lengths; corruption only gives typed errors (part ${part + 1}/10)`, async () => {
      let returned = 0;
      await fc.assert(
        fc.asyncProperty(fc.integer({ min: 0, max: 3 }), fc.boolean(), fc.array(cmdArb, { maxLength: 40 }), async (sizeLog, eventIdx, cmds) => {
          const size = 1 << sizeLog;
          const { memory, addresses, driver, queue } = pair({ size, eventIdx, indirect: true });
          const batch = new ChainBatch(size);
          const inDevice: { head: number; wbytes: number }[] = [];
          const lenByHead = new Map<number, number>();
          const outstanding = new Set<string>();
          let nextToken = 0;
          let corrupted = false;
          const ringBytes = memory.regions[0]!.bytes;
          try {
            for (const c of cmds) {
              switch (c.t) {
                case "add": {
                  if (c.nR + c.nW === 0) break;
                  const base = c.cross ? BUF_B - 16n : BUF_A + BigInt(nextToken % 64) * 0x40n;
                  const bufs = (n: number, off: bigint) => Array.from({ length: n }, (_, i) => ({ addr: base + off + BigInt(i * 8), len: 8 }));
                  const token = `t${nextToken++}`;
                  const need = c.ind ? 1 : c.nR + c.nW;
                  if (driver.numFree < need) {
                    assert.throws(
                      () => driver.add(bufs(c.nR, 0n), bufs(c.nW, 0x20n)),
                      (e) => isVirtqueueError(e) && e.code === "RING_FULL",
                    );
                    break;
                  }
                  if (c.ind) driver.addIndirect(bufs(c.nR, 0n), bufs(c.nW, 0x20n), BUF_A + 0x6000n + BigInt(nextToken % 64) * 0x80n, token);
                  else driver.add(bufs(c.nR, 0n), bufs(c.nW, 0x20n), token);
                  outstanding.add(token);
                  break;
                }
                case "publish":
                  driver.publish();
                  break;
                case "pop": {
                  const n = queue.pop(batch, c.max);
                  for (let i = 0; i < n; i++) inDevice.push({ head: batch.head(i), wbytes: batch.writableBytes[i]! });
                  for (let i = 0; i < n; i++) {
                    // Segments cover exactly the chain's bytes (a guest error here is typed, see catch).
                    const cur = queue.segments(batch, i);
                    let total = 0;
                    while (cur.next()) total += cur.len;
                    if (!corrupted) assert.equal(total, batch.readableBytes[i]! + batch.writableBytes[i]!);
                  }
                  break;
                }
                case "complete": {
                  for (const ch of inDevice.splice(0, c.k)) {
                    let len = ch.wbytes;
                    if (c.io && ch.wbytes > 0) {
                      len = Math.min(len, 5);
                    }
                    queue.addUsed(ch.head, len);
                    lenByHead.set(ch.head, len);
                  }
                  break;
                }
                case "publishUsed":
                  queue.publishUsed();
                  break;
                case "collect":
                  for (const u of driver.collectUsed()) {
                    const tok = u.token as string;
                    if (!corrupted) {
                      assert.ok(outstanding.delete(tok), `token ${tok} returned once`);
                      assert.equal(u.len, lenByHead.get(u.id), "used len as written by the device");
                    }
                  }
                  break;
                case "restart": {
                  const base = queue.stop();
                  queue.start(base);
                  break;
                }
                case "notify":
                  if (c.on) queue.enableNotification();
                  else queue.disableNotification();
                  if (c.on) driver.enableInterrupts();
                  else driver.disableInterrupts();
                  break;
                case "corrupt": {
                  const limit = Number(addresses.used) + 6 + 8 * size;
                  ringBytes[c.off % limit] = c.value;
                  corrupted = true;
                  break;
                }
              }
            }
            if (!corrupted) {
              // Drain: everything added comes back exactly once.
              driver.publish();
              for (let guard = 0; guard < 4 && outstanding.size > 0; guard++) {
                const n = queue.pop(batch);
                for (let i = 0; i < n; i++) inDevice.push({ head: batch.head(i), wbytes: batch.writableBytes[i]! });
                for (const ch of inDevice.splice(0)) queue.addUsed(ch.head, ch.wbytes);
                queue.publishUsed();
                for (const u of driver.collectUsed()) {
                  assert.ok(outstanding.delete(u.token as string));
                  returned++;
                }
              }
              assert.equal(outstanding.size, 0, "all chains returned");
              assert.equal(driver.numFree, size);
            }
          } catch (e) {
            if (!corrupted) throw e;
            assert.ok(isVirtqueueError(e), `untyped error ${String(e)}`);
          }
          // The copy helpers never escape with an untyped error either (segments of a fresh pop).
          if (queue.started && queue.brokenBy === undefined && !corrupted) {
            const n = queue.pop(batch);
            for (let i = 0; i < n; i++) {
              await readChain(queue.segments(batch, i), memory, new Uint8Array(8));
              await writeChain(queue.segments(batch, i), memory, new Uint8Array(0));
            }
          }
        }),
        { numRuns: 10_000 },
      );
      assert.ok(returned > 2500, `chains went round (${returned})`);
    });
});
