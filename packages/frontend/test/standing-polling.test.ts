/**
 * DriverQueue's standing chains (made once, reposted from their completions) and its polling mode
 * (completions collected while they keep coming, the device's calls suppressed meanwhile, asked
 * for again once idle) against a real back-end: the RAM blk device in its own process.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { VirtioFeature } from "@vhostkit/wire";
import { translateRange } from "@vhostkit/regions";
import { AVAIL_F_NO_INTERRUPT } from "@vhostkit/virtqueue";
import { Guest, isFrontendError, type DriverQueue } from "../src/index.js";
import { startRamBlk } from "./helpers/ram-blk-process.js";

/** One blk queue (split ring unless `packed`) on a fresh RAM blk device; `fn` runs with it, then everything is closed. */
async function withQueue(features: bigint, fn: (q: DriverQueue, guest: Guest) => Promise<void>, packed = false): Promise<void> {
  const blk = await startRamBlk(["--size-mib", "1"]);
  const guest = new Guest();
  try {
    const device = await guest.addDevice({ socketPath: blk.socket, packedRing: packed });
    const [q] = await device.start({ features, queues: [0], queueSize: 16 });
    assert.equal((q as DriverQueue).packed, packed);
    await fn(q as DriverQueue, guest);
  } finally {
    await guest.close();
    await blk.stop();
  }
}

/** A blk read of sector 0 as a standing chain: header (readable), 512 data bytes and the status byte. */
function readChain(q: DriverQueue, done: (len: number, status: number) => void, fail: (e: unknown) => void) {
  const header = q.pinBuffer(16);
  header.bytes.fill(0); // VIRTIO_BLK_T_IN, sector 0
  const data = q.pinBuffer(512);
  const status = q.pinBuffer(1);
  const chain = q.standing(
    [{ addr: header.addr, len: 16 }],
    [
      { addr: data.addr, len: 512 },
      { addr: status.addr, len: 1 },
    ],
    (len) => {
      const s = status.bytes[0] as number;
      status.bytes[0] = 0xff;
      done(len, s);
    },
    fail,
  );
  status.bytes[0] = 0xff;
  return chain;
}

test("standing chains: 4 blk reads reposted from their own completions 400 times, each completed whole; misuse is BAD_ARGUMENT", async () => {
  await withQueue(0n, async (q) => {
    let completions = 0;
    const lens = new Set<number>();
    const statuses = new Set<number>();
    let resolve!: () => void; // Node 20 has no Promise.withResolvers
    const finished = new Promise<void>((r) => (resolve = r));
    const chains = Array.from({ length: 4 }, () => {
      const c = readChain(
        q,
        (len, status) => {
          completions++;
          lens.add(len);
          statuses.add(status);
          if (completions <= 396) q.repost(c);
          if (completions === 400) resolve();
        },
        (e) => assert.fail(`standing chain failed: ${String(e)}`),
      );
      return c;
    });
    q.batch(() => {
      for (const c of chains) q.repost(c);
    });
    assert.throws(
      () => q.repost(chains[0]!),
      (e) => isFrontendError(e) && e.code === "BAD_ARGUMENT",
      "already queued",
    );
    assert.throws(
      () => q.repost({ readable: [], writable: [] }),
      (e) => isFrontendError(e) && e.code === "BAD_ARGUMENT",
      "not made by standing()",
    );
    assert.throws(
      () =>
        q.standing(
          [],
          [],
          () => undefined,
          () => undefined,
        ),
      (e) => isFrontendError(e) && e.code === "BAD_ARGUMENT",
      "no buffers",
    );
    await finished;
    assert.equal(completions, 400);
    assert.deepEqual([...lens], [513], "512 data bytes and the status byte, every time");
    assert.deepEqual([...statuses], [0], "VIRTIO_BLK_S_OK every time");
    assert.equal(q.inFlight, 0, "nothing left on the ring");
  });
});

test("a standing chain queued when the queue fails gets the DEVICE_FAILED error once", async () => {
  let failures = 0;
  let code = "";
  await withQueue(0n, async (q, guest) => {
    // Reposted forever: one is always on the ring when the guest closes the device.
    const c = readChain(
      q,
      () => q.repost(c),
      (e) => {
        failures++;
        code = isFrontendError(e) ? e.code : String(e);
      },
    );
    q.repost(c);
    await new Promise((r) => setTimeout(r, 20));
    await guest.close();
  });
  assert.equal(failures, 1);
  assert.equal(code, "DEVICE_FAILED");
});

test("polling: NO_INTERRUPT is set while completions keep coming and cleared once the queue idles; a request after that still completes", async () => {
  await withQueue(0n, async (q, guest) => {
    q.setPolling(20_000); // 20 ms of polling after the last completion
    const flags = translateRange(guest.space, q.rings.avail, 2, true)[0]!.bytes;
    const seen: number[] = [];
    let completions = 0;
    let resolve!: () => void; // Node 20 has no Promise.withResolvers
    const finished = new Promise<void>((r) => (resolve = r));
    const c = readChain(
      q,
      () => {
        completions++;
        if (completions % 50 === 0) seen.push((flags[0] as number) & AVAIL_F_NO_INTERRUPT);
        if (completions < 300) q.repost(c);
        else resolve();
      },
      (e) => assert.fail(String(e)),
    );
    q.repost(c);
    await finished;
    assert.ok(seen.length >= 5);
    assert.ok(
      seen.slice(1).every((f) => f === AVAIL_F_NO_INTERRUPT),
      `NO_INTERRUPT while busy: ${seen}`,
    );
    // Idle: the queue asks for calls again (the flag is cleared), then waits for one.
    while (((flags[0] as number) & AVAIL_F_NO_INTERRUPT) !== 0) await new Promise((r) => setTimeout(r, 5));
    const r = await q.transfer([new Uint8Array(16)], [512, 1]);
    assert.equal(r.buffers[1]![0], 0, "completed after re-arming");
    assert.throws(
      () => q.setPolling(-1),
      (e) => isFrontendError(e) && e.code === "BAD_ARGUMENT",
    );
  });
});

for (const [name, features, packed] of [
  ["split", 0n, false],
  ["split, EVENT_IDX", VirtioFeature.EVENT_IDX, false],
  ["packed", 0n, true],
  ["packed, EVENT_IDX", VirtioFeature.EVENT_IDX, true],
] as const) {
  test(`polling stops just as a completion arrives (${name}): 500 requests, each sent at a different moment after the last, all complete`, async () => {
    await withQueue(
      features,
      async (q) => {
        // 1 µs of polling: it gives up at once, so completions keep landing around the re-arm.
        q.setPolling(1);
        for (let i = 0; i < 500; i++) {
          if (i % 3 === 1) await new Promise((r) => setImmediate(r));
          else if (i % 3 === 2) await new Promise((r) => setTimeout(r, 0));
          // A completion missed at the re-arm would leave this request to time out (TIMEOUT).
          const r = await q.transfer([new Uint8Array(16)], [512, 1], 10_000);
          assert.equal(r.buffers[1]![0], 0);
        }
      },
      packed,
    );
  });
}
