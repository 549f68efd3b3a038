import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { GuestRam, MemoryTable, guestAddress, type GuestMemory } from "@vhostkit/regions";
import { openSync } from "node:fs";
import { FallbackError, FallbackMemory, type MemAccessChannel } from "../src/index.js";

const MiB = 1n << 20n;

/**
 * The front-end's view: all of guest-physical [0, 4 MiB) in real memfd memory. The back-end's memory
 * table only has [0, 1 MiB) and [2 MiB, 3 MiB): the rest (as if another device's shared memory
 * region) must come through the channel. The channel records every call.
 */
function setUp(chunk?: number) {
  const frontEnd = new GuestRam({ blocks: [{ guestPhysAddr: 0n, size: 4n * MiB }] });
  const table = new GuestRam({
    blocks: [
      { guestPhysAddr: 0n, size: MiB },
      { guestPhysAddr: 2n * MiB, size: MiB },
    ],
  });
  const calls: { op: "read" | "write"; gpa: bigint; size: number }[] = [];
  const channel: MemAccessChannel = {
    async memReadInto(gpa, dst) {
      calls.push({ op: "read", gpa, size: dst.length });
      await frontEnd.read(guestAddress(gpa), dst);
    },
    async memWrite(gpa, data) {
      calls.push({ op: "write", gpa, size: data.length });
      await frontEnd.write(guestAddress(gpa), data);
    },
  };
  const mem = new FallbackMemory(table, channel, chunk === undefined ? {} : { chunk });
  return {
    frontEnd,
    table,
    mem,
    calls,
    [Symbol.dispose]() {
      frontEnd.dispose();
      table.dispose();
    },
  };
}

describe("FallbackMemory", () => {
  test("a read spanning direct, remote and direct memory returns the front-end's bytes; only the remote part is requested", async () => {
    using setup = setUp();
    const { frontEnd, table, mem, calls } = setup;
    const start = MiB - 100n;
    const len = Number(MiB) + 200;
    const pattern = Uint8Array.from({ length: len }, (_, i) => (i * 13 + 5) & 0xff);
    await frontEnd.write(guestAddress(start), pattern);
    // The back-end's own table holds the same RAM for its direct parts (shared memfd in real life).
    await table.write(guestAddress(start), pattern.subarray(0, 100));
    await table.write(guestAddress(2n * MiB), pattern.subarray(len - 100));
    const got = new Uint8Array(len);
    await mem.read(guestAddress(start), got);
    assert.deepEqual(got, pattern);
    assert.deepEqual(
      calls.map((c) => c.op),
      Array(16).fill("read"),
      "1 MiB remote in 64 KiB pieces",
    );
    assert.equal(calls[0]?.gpa, MiB);
    assert.ok(calls.every((c) => c.size <= 65536));
    assert.equal(
      calls.reduce((s, c) => s + c.size, 0),
      Number(MiB),
    );
  });

  test("over a back-end MemoryTable the remote run is sized from the miss in one step, pieces as before", async () => {
    // The real back-end table: the front-end's memfd mapped at [0, 1 MiB) and [2 MiB, 3 MiB).
    using frontEnd = new GuestRam({ blocks: [{ guestPhysAddr: 0n, size: 4n * MiB }] });
    const block = frontEnd.memoryTable()[0]!;
    using table = new MemoryTable();
    for (const gpa of [0n, 2n * MiB])
      table.addRegion({
        guestPhysAddr: gpa,
        memorySize: MiB,
        userspaceAddr: block.userspaceAddr + gpa,
        mmapOffset: gpa,
        fd: openSync(`/proc/self/fd/${block.fd}`, "r+"),
      });
    const probes: bigint[] = [];
    const counting: GuestMemory = {
      translate: (a, l) => (probes.push(a), table.translate(a, l)),
      read: (a, d) => table.read(a, d),
      write: (a, d) => table.write(a, d),
    };
    const sizes: number[] = [];
    const mem = new FallbackMemory(counting, {
      memReadInto: async (gpa, dst) => (sizes.push(dst.length), frontEnd.read(guestAddress(gpa), dst)),
      memWrite: async (gpa, data) => frontEnd.write(guestAddress(gpa), data),
    });
    const pattern = Uint8Array.from({ length: Number(MiB) + 200 }, (_, i) => (i * 7 + 1) & 0xff);
    await frontEnd.write(guestAddress(MiB - 100n), pattern);
    const got = new Uint8Array(pattern.length);
    await mem.read(guestAddress(MiB - 100n), got);
    assert.deepEqual(got, pattern);
    assert.deepEqual(sizes, Array(16).fill(65536));
    assert.equal(probes.length, 3, "direct, miss (which names the next region), direct: no page-by-page probing");
  });

  test("a write lands in the front-end's memory in chunks; translate keeps reporting the miss", async () => {
    using setup = setUp(4096);
    const { frontEnd, mem, calls } = setup;
    const data = Uint8Array.from({ length: 10_000 }, (_, i) => i & 0xff);
    await mem.write(guestAddress(MiB + 10n), data);
    const back = new Uint8Array(data.length);
    await frontEnd.read(guestAddress(MiB + 10n), back);
    assert.deepEqual(back, data);
    assert.deepEqual(
      calls.map((c) => c.size),
      [4096, 4096, 1808],
    );
    const t = mem.translate(guestAddress(MiB + 10n), 16);
    assert.equal(t.ok, false, "translation still misses, so virtqueue yields a remote segment");
  });

  test("no channel: remote parts fail with `UNMAPPED`, direct parts of a write are not touched", async () => {
    using table = new GuestRam({ blocks: [{ guestPhysAddr: 0n, size: MiB }] });
    const mem = new FallbackMemory(table, () => undefined);
    await assert.rejects(mem.read(guestAddress(MiB), new Uint8Array(8)), (e: unknown) => e instanceof FallbackError && e.code === "UNMAPPED");
    const before = new Uint8Array(8);
    await table.read(guestAddress(MiB - 8n), before);
    await assert.rejects(mem.write(guestAddress(MiB - 8n), new Uint8Array(16).fill(0xee)), (e: unknown) => e instanceof FallbackError && e.code === "UNMAPPED");
    const after = new Uint8Array(8);
    await table.read(guestAddress(MiB - 8n), after);
    assert.deepEqual(after, before, "all or nothing when the channel is missing");
  });

  test("a front-end refusal is `REMOTE_FAILED` with the cause kept; a wrapping access is `OUT_OF_BOUNDS`", async () => {
    using table = new GuestRam({ blocks: [{ guestPhysAddr: 0n, size: MiB }] });
    const refusal = new Error("front-end said no");
    const mem = new FallbackMemory(table, {
      memReadInto: () => Promise.reject(refusal),
      memWrite: () => Promise.reject(refusal),
    });
    await assert.rejects(
      mem.read(guestAddress(2n * MiB), new Uint8Array(4)),
      (e: unknown) => e instanceof FallbackError && e.code === "REMOTE_FAILED" && e.cause === refusal,
    );
    await assert.rejects(mem.read(guestAddress((1n << 64n) - 2n), new Uint8Array(4)), (e: unknown) => e instanceof FallbackError && e.code === "OUT_OF_BOUNDS");
    assert.throws(() => new FallbackMemory(table as GuestMemory, () => undefined, { chunk: 65537 }), RangeError);
  });
});
