/**
 * Packed driver against packed device over the in-memory multi-region guest: one device function
 * written against `DeviceQueue` serves split and packed rings unchanged; round trips at sizes that
 * are not powers of two across many wraps, indirect lists, buffers across regions and outside the
 * memory table, and a back-end restarted from GET_VRING_BASE.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { GuestMemory } from "@vhostkit/regions";
import { ChainBatch, PackedQueue, SegmentCursor, readChain, writeChain } from "../src/index.js";
import type { DeviceQueue } from "../src/index.js";
import { packedAddresses, packedPair } from "./helpers/packed-ring.js";
import { BUF_A, BUF_B, REMOTE, pair, segmentsOf } from "./helpers/ring-fixture.js";

/**
 * A device's processQueue, as a back-end would write it (README example): pop, read the request,
 * write the reply (the request upper-cased), push used, publish, re-arm. Nothing here knows the
 * ring layout.
 */
async function processQueue(q: DeviceQueue, memory: GuestMemory, batch: ChainBatch, cur: SegmentCursor): Promise<{ chains: number; notified: number }> {
  let chains = 0;
  let notified = 0;
  do {
    for (let n = q.pop(batch), i = 0; i < n; i++) {
      const req = new Uint8Array(batch.readableBytes[i]!);
      await readChain(q.segments(batch, i, cur), memory, req);
      const reply = new TextEncoder().encode(new TextDecoder().decode(req).toUpperCase());
      q.addUsed(batch.head(i), await writeChain(q.segments(batch, i, cur), memory, reply.subarray(0, batch.writableBytes[i]!)));
      chains++;
    }
    if (q.publishUsed()) notified++;
  } while (q.enableNotification());
  return { chains, notified };
}

/** The driver operations both drivers share, for a layout-independent client. */
interface Client {
  add(readable: { addr: bigint; len: number }[], writable: { addr: bigint; len: number }[], token?: string): number;
  publish(): boolean;
  collectUsed(): { id: number; len: number; token: string | undefined }[];
  enableInterrupts(): boolean;
  readonly numFree: number;
}

async function echoRounds(
  driver: Client,
  queue: DeviceQueue,
  memory: GuestMemory & { writeSync(a: bigint, b: Uint8Array): void; readSync(a: bigint, b: Uint8Array): void },
  rounds: number,
  perRound: number,
): Promise<void> {
  const batch = new ChainBatch(8);
  const cur = new SegmentCursor();
  let serial = 0;
  for (let r = 0; r < rounds; r++) {
    const sent = new Map<string, { out: bigint; text: string }>();
    for (let k = 0; k < perRound && driver.numFree >= 2; k++) {
      const text = `msg-${serial++}`;
      const slot = BigInt((serial % 32) * 0x100);
      memory.writeSync(BUF_A + slot, new TextEncoder().encode(text));
      const token = `t${serial}`;
      driver.add([{ addr: BUF_A + slot, len: text.length }], [{ addr: BUF_A + 0x4000n + slot, len: 32 }], token);
      sent.set(token, { out: BUF_A + 0x4000n + slot, text });
    }
    driver.publish();
    const { chains } = await processQueue(queue, memory, batch, cur);
    assert.equal(chains, sent.size);
    assert.equal(driver.enableInterrupts(), sent.size > 0);
    for (const u of driver.collectUsed()) {
      const s = sent.get(u.token!)!;
      assert.equal(u.len, s.text.length);
      const back = new Uint8Array(u.len);
      memory.readSync(s.out, back);
      assert.equal(new TextDecoder().decode(back), s.text.toUpperCase());
      sent.delete(u.token!);
    }
    assert.equal(sent.size, 0, "every request answered once");
  }
}

describe("one device function, both layouts", () => {
  test("split ring", async () => {
    const { memory, driver, queue } = pair({ size: 8 });
    await echoRounds(driver as unknown as Client, queue, memory, 20, 3);
  });
  test("packed ring", async () => {
    const { memory, driver, queue } = packedPair({ size: 8 });
    await echoRounds(driver as Client, queue, memory, 20, 3);
    assert.equal(driver.numFree, 8);
  });
  test("packed ring, EVENT_IDX, sizes that are not powers of two, many wraps", async () => {
    for (const size of [2, 3, 5, 7, 12, 100]) {
      const { memory, driver, queue } = packedPair({ size, eventIdx: true });
      await echoRounds(driver as Client, queue, memory, 3 * size, Math.min(size, 5));
      assert.equal(driver.numFree, size);
      assert.equal(queue.base, (driver.availIndex | (driver.availIndex << 16)) >>> 0, "drained: used position = avail position");
    }
  });
});

describe("packed driver <-> device", () => {
  test("indirect and direct lists mixed in one ring; used lengths come back", () => {
    const { driver, queue, batch, size } = packedPair({ size: 6, indirect: true });
    for (let round = 0; round < 10; round++) {
      const a = driver.add(
        [
          { addr: BUF_A, len: 3 },
          { addr: BUF_A + 8n, len: 5 },
        ],
        [{ addr: BUF_A + 0x100n, len: 7 }],
        "direct",
      );
      const b = driver.addIndirect(
        [{ addr: BUF_A, len: 4 }],
        [
          { addr: BUF_B, len: 9 },
          { addr: BUF_B + 0x10n, len: 1 },
        ],
        BUF_A + 0x4000n + BigInt(round * 64),
        "indirect",
      );
      assert.equal(driver.publish(), true);
      assert.equal(queue.pop(batch), 2);
      assert.deepEqual([batch.head(0), batch.head(1)], [a, b]);
      assert.deepEqual([batch.descriptorCount(0), batch.descriptorCount(1)], [3, 3]);
      assert.deepEqual([batch.readableBytes[1], batch.writableBytes[1]], [4, 10]);
      queue.pushUsed(batch, [7, 10]);
      queue.publishUsed();
      const used = driver.collectUsed().sort((x, y) => x.id - y.id);
      assert.deepEqual(used.map((u) => [u.token, u.len]).sort(), [
        ["direct", 7],
        ["indirect", 10],
      ]);
      assert.equal(driver.numFree, size);
    }
  });

  test("completion out of order: used descriptors in completion order, each skipping its list", () => {
    const { driver, queue, batch } = packedPair({ size: 7 });
    const ids = [1, 2, 3].map((n) =>
      driver.add(
        Array.from({ length: n }, (_, i) => ({ addr: BUF_A + BigInt(i), len: 1 })),
        [],
        `n${n}`,
      ),
    );
    driver.publish();
    assert.equal(queue.pop(batch), 3);
    queue.addUsed(ids[2]!, 0);
    queue.addUsed(ids[0]!, 0);
    queue.publishUsed();
    assert.deepEqual(
      driver.collectUsed().map((u) => u.token),
      ["n3", "n1"],
    );
    assert.equal(driver.numFree, 7 - 2);
    queue.addUsed(ids[1]!, 0);
    queue.publishUsed();
    assert.deepEqual(
      driver.collectUsed().map((u) => u.token),
      ["n2"],
    );
    assert.equal(driver.numFree, 7);
    assert.equal(queue.base, 0x8006_8006);
  });

  test("segments across regions and outside the memory table (remote, served by read/write)", async () => {
    const { memory, driver, queue, batch } = packedPair({ size: 4 });
    memory.writeSync(REMOTE, Uint8Array.of(9, 8, 7));
    driver.add(
      [
        { addr: BUF_B - 10n, len: 30 },
        { addr: REMOTE, len: 3 },
      ],
      [{ addr: REMOTE + 0x10n, len: 2 }],
    );
    driver.publish();
    queue.pop(batch);
    assert.deepEqual(
      segmentsOf(queue, batch, 0).map((s) => [s.kind, s.addr, s.len]),
      [
        ["host", BUF_B - 10n, 10],
        ["host", BUF_B, 20],
        ["remote", REMOTE, 3],
        ["remote", REMOTE + 0x10n, 2],
      ],
    );
    const dst = new Uint8Array(33);
    assert.equal(await readChain(queue.segments(batch, 0), memory, dst), 33);
    assert.deepEqual([...dst.subarray(30)], [9, 8, 7]);
    assert.equal(await writeChain(queue.segments(batch, 0), memory, Uint8Array.of(5, 6)), 2);
    const back = new Uint8Array(2);
    memory.readSync(REMOTE + 0x10n, back);
    assert.deepEqual([...back], [5, 6]);
  });

  test("a back-end restarted from GET_VRING_BASE (a new queue) carries on where the old one stopped", () => {
    const size = 5;
    const { memory, driver, queue, batch } = packedPair({ size });
    let q = queue;
    for (let round = 0; round < 12; round++) {
      driver.add([{ addr: BUF_A, len: 1 }], [], `r${round}`);
      driver.add(
        [
          { addr: BUF_A, len: 1 },
          { addr: BUF_A, len: 1 },
        ],
        [],
        `s${round}`,
      );
      driver.publish();
      assert.equal(q.pop(batch), 2);
      q.pushUsed(batch);
      q.publishUsed();
      const base = q.stop(); // GET_VRING_BASE
      q = new PackedQueue({ size, memory, addresses: packedAddresses(size) });
      q.start(base); // SET_VRING_BASE + SET_VRING_KICK on the new back-end
      assert.deepEqual(
        driver.collectUsed().map((u) => u.token),
        [`r${round}`, `s${round}`],
      );
      assert.equal(base & 0xffff, driver.availIndex);
    }
  });

  test("used descriptors the device queued before GET_VRING_BASE are published by it", () => {
    const { driver, queue, batch } = packedPair({ size: 4 });
    driver.add([{ addr: BUF_A, len: 1 }], [], "x");
    driver.publish();
    queue.pop(batch);
    queue.pushUsed(batch);
    assert.equal(driver.collectUsed().length, 0);
    assert.equal(queue.stop(), 0x8001_8001);
    assert.deepEqual(
      driver.collectUsed().map((u) => u.token),
      ["x"],
    );
  });

  test("queue size 1 and 32768", () => {
    for (const size of [1, 32768]) {
      const { driver, queue, batch } = packedPair({ size });
      for (let i = 0; i < 3; i++) {
        driver.add([{ addr: BUF_A, len: 1 }], []);
        driver.publish();
        assert.equal(queue.pop(batch), 1);
        queue.pushUsed(batch);
        queue.publishUsed();
        assert.equal(driver.collectUsed().length, 1);
      }
      assert.equal(driver.availIndex, size === 1 ? 0x0000 : 0x8003, "size 1 flips the wrap counter at every list");
    }
  });
});
