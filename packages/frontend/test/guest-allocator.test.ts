import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { GuestAllocator, isFrontendError } from "../src/index.js";

const BASE = 0x10000;
const SIZE = 0x8000;

type Cmd = { readonly op: "alloc"; readonly len: number; readonly align: number } | { readonly op: "free"; readonly pick: number };

const cmd: fc.Arbitrary<Cmd> = fc.oneof(
  fc.record({
    op: fc.constant("alloc" as const),
    len: fc.oneof(fc.integer({ min: 1, max: 64 }), fc.constantFrom(16, 17, 512, 4096, 4097), fc.integer({ min: 1, max: SIZE })),
    align: fc.constantFrom(16, 16, 16, 64, 4096),
  }),
  fc.record({ op: fc.constant("free" as const), pick: fc.nat() }),
);

test("random alloc/free sequences: in range, aligned, disjoint, counted, and no space is ever lost", () => {
  fc.assert(
    fc.property(fc.array(cmd, { maxLength: 200 }), (cmds) => {
      const a = new GuestAllocator(BigInt(BASE), BigInt(SIZE));
      const live = new Map<number, number>(); // start -> rounded size
      for (const c of cmds) {
        if (c.op === "free") {
          const keys = [...live.keys()];
          if (keys.length === 0) continue;
          const at = keys[c.pick % keys.length]!;
          live.delete(at);
          a.free(BigInt(at));
          a.free(BigInt(at)); // a double free is ignored
          continue;
        }
        const size = Math.ceil(c.len / 16) * 16;
        let at: number;
        try {
          at = Number(a.alloc(c.len, c.align));
        } catch (e) {
          assert.ok(isFrontendError(e) && e.code === "OUT_OF_MEMORY", String(e));
          // Only a real shortage may refuse: no aligned gap of `size` bytes between live blocks.
          const sorted = [...live].sort((x, y) => x[0] - y[0]);
          let cursor = BASE;
          for (const [s, l] of [...sorted, [BASE + SIZE, 0] as [number, number]]) {
            const start = Math.ceil(cursor / c.align) * c.align;
            assert.ok(start + size > s, `refused 0x${size.toString(16)} (align ${c.align}) although [0x${cursor.toString(16)}, 0x${s.toString(16)}) is free`);
            cursor = Math.max(cursor, s + l);
          }
          continue;
        }
        assert.equal(at % c.align, 0, "aligned");
        assert.ok(at >= BASE && at + size <= BASE + SIZE, "inside the managed range");
        for (const [s, l] of live)
          assert.ok(at + size <= s || s + l <= at, `0x${at.toString(16)}+0x${size.toString(16)} overlaps 0x${s.toString(16)}+0x${l.toString(16)}`);
        live.set(at, size);
        assert.equal(a.allocatedBytes, BigInt([...live.values()].reduce((x, y) => x + y, 0)));
      }
      for (const at of live.keys()) a.free(BigInt(at));
      assert.equal(a.allocatedBytes, 0n);
      assert.equal(a.alloc(SIZE), BigInt(BASE), "everything coalesces back into one range");
    }),
    { numRuns: 300 },
  );
});

test("a freed request buffer is handed out again for the next request of its size", () => {
  const a = new GuestAllocator(0n, 0x100000n);
  const x = a.alloc(4096);
  const y = a.alloc(16);
  a.free(x);
  assert.equal(a.alloc(4096), x);
  assert.notEqual(a.alloc(16), y, "y is still live");
});

test("ranges past 2^53 are refused", () => {
  assert.throws(
    () => new GuestAllocator(1n << 53n, 4096n),
    (e: unknown) => isFrontendError(e) && e.code === "BAD_ARGUMENT",
  );
});
