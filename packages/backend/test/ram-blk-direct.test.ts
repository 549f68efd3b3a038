/**
 * The RAM blk example's request handler in this process, on a real split ring over memfd guest RAM
 * shared with a memory table: the direct path (no promise, the disk copied straight into the
 * guest's buffers) against buffers split in odd places, stale bytes never handed back, null mode
 * (`discard`), and a buffer outside the memory table, which takes the general path.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { GuestRam, MemoryTable, guestAddress } from "@vhostkit/regions";
import { dupCloexec } from "@vhostkit/transport/sys";
import { SplitQueue } from "@vhostkit/virtqueue";
import { SplitDriver, type DriverBuffer } from "@vhostkit/virtqueue/driver";
import type { DeviceBackend, QueueContext } from "../src/index.js";

const { ramBlk } = (await import(new URL("../examples/ram-blk.mjs", import.meta.url).href)) as {
  ramBlk: (disk: Uint8Array, options?: { discard?: boolean }) => DeviceBackend;
};

const MiB = 1n << 20n;
const ram = new GuestRam({ blocks: [{ guestPhysAddr: 0n, size: MiB }] });
const block = ram.memoryTable()[0]!;
const memory = new MemoryTable();
memory.addRegion({ guestPhysAddr: 0n, memorySize: MiB, userspaceAddr: block.userspaceAddr, mmapOffset: 0n, fd: dupCloexec(block.fd) });
after(() => {
  memory.dispose();
  ram.dispose();
});

/** A disk of 64 KiB whose byte i is (i * 7) mod 256. */
function patternDisk(): Uint8Array {
  return Uint8Array.from({ length: 64 * 1024 }, (_, i) => (i * 7) & 0xff);
}

/** One ring (at `base`) on a device over `disk`: `serve` sends one request and returns its used length. */
function ring(base: bigint, disk: Uint8Array, discard = false) {
  const addresses = { desc: base, avail: base + 0x200n, used: base + 0x400n };
  const driver = new SplitDriver({ size: 16, memory: ram, addresses });
  const queue = new SplitQueue({ size: 16, memory, addresses });
  queue.start(0);
  const device = ramBlk(disk, { discard });
  const ctx: QueueContext = { index: 0, queue, memory, notify: () => void queue.publishUsed(), fail: () => undefined };
  return {
    queue,
    /** Writes the header (`type`, `sector`) at 0x10000 and `data` after it, then lets the device serve it. */
    async serve(type: number, sector: bigint, writable: DriverBuffer[], data?: Uint8Array): Promise<number> {
      const head = new Uint8Array(16);
      new DataView(head.buffer).setUint32(0, type, true);
      new DataView(head.buffer).setBigUint64(8, sector, true);
      await ram.write(guestAddress(0x10000n), head);
      const readable: DriverBuffer[] = [{ addr: 0x10000n, len: 16 }];
      if (data) await ram.write(guestAddress(0x11000n), data), readable.push({ addr: 0x11000n, len: data.length });
      driver.add(readable, writable);
      driver.publish();
      await device.processQueue(ctx);
      const used = driver.collectUsed();
      assert.equal(used.length, 1);
      return used[0]!.len;
    },
  };
}

/** Fills `[addr, addr + len)` with 0xee (bytes of an earlier request) and returns a reader of it. */
async function stale(addr: bigint, len: number): Promise<() => Promise<Uint8Array>> {
  await ram.write(guestAddress(addr), new Uint8Array(len).fill(0xee));
  return async () => {
    const out = new Uint8Array(len);
    await ram.read(guestAddress(addr), out);
    return out;
  };
}

test("a 4 KiB read lands straight in buffers split at odd places, the status byte in the data's last descriptor", async () => {
  const disk = patternDisk();
  const r = ring(0x1000n, disk);
  const first = await stale(0x20000n, 1000);
  const rest = await stale(0x30000n, 3097);
  const len = await r.serve(0, 3n, [
    { addr: 0x20000n, len: 1000 },
    { addr: 0x30000n, len: 3097 },
  ]);
  assert.equal(len, 4097);
  assert.deepEqual(await first(), disk.subarray(1536, 1536 + 1000));
  const tail = await rest();
  assert.deepEqual(tail.subarray(0, 3096), disk.subarray(2536, 2536 + 3096));
  assert.equal(tail[3096], 0, "S_OK");
});

test("errors and requests without data hand back zeros, never an earlier request's bytes", async () => {
  const disk = patternDisk();
  const r = ring(0x2000n, disk);
  const past = await stale(0x20000n, 513);
  assert.equal(await r.serve(0, 128n, [{ addr: 0x20000n, len: 513 }]), 513, "a read past the end");
  assert.deepEqual(
    await past(),
    Uint8Array.from({ length: 513 }, (_, i) => (i === 512 ? 1 : 0)),
    "zeros, then S_IOERR",
  );
  const odd = await stale(0x20000n, 301);
  assert.equal(await r.serve(0, 0n, [{ addr: 0x20000n, len: 301 }]), 301, "a read of 300 bytes: not a whole sector");
  assert.deepEqual(
    await odd(),
    Uint8Array.from({ length: 301 }, (_, i) => (i === 300 ? 1 : 0)),
  );
  const flush = await stale(0x20000n, 9);
  assert.equal(
    await r.serve(4, 0n, [
      { addr: 0x20000n, len: 5 },
      { addr: 0x20005n, len: 4 },
    ]),
    9,
    "a flush with 9 writable bytes",
  );
  assert.deepEqual(await flush(), new Uint8Array(9));
});

test("a write reaches the disk and a read brings it back; discard drops writes and answers reads with the status only", async () => {
  const disk = patternDisk();
  const r = ring(0x3000n, disk);
  const data = Uint8Array.from({ length: 1024 }, (_, i) => 255 - (i & 0xff));
  const st = await stale(0x20000n, 1);
  assert.equal(await r.serve(1, 4n, [{ addr: 0x20000n, len: 1 }], data), 1);
  assert.deepEqual(await st(), new Uint8Array([0]));
  assert.deepEqual(disk.subarray(2048, 3072), data);
  const back = await stale(0x20000n, 1025);
  assert.equal(await r.serve(0, 4n, [{ addr: 0x20000n, len: 1025 }]), 1025);
  assert.deepEqual((await back()).subarray(0, 1024), data);

  const nullDisk = patternDisk();
  const n = ring(0x4000n, nullDisk, true);
  assert.equal(await n.serve(1, 4n, [{ addr: 0x20000n, len: 1 }], data), 1);
  assert.deepEqual(nullDisk, patternDisk(), "the write was dropped");
  const read = await stale(0x20000n, 513);
  assert.equal(await n.serve(0, 4n, [{ addr: 0x20000n, len: 513 }]), 513);
  assert.deepEqual(
    await read(),
    Uint8Array.from({ length: 513 }, (_, i) => (i === 512 ? 0 : 0xee)),
    "data untouched, S_OK",
  );
});

test("a buffer outside the memory table takes the general path: nothing reaches it, the queue stays usable", async () => {
  const disk = patternDisk();
  const r = ring(0x5000n, disk);
  assert.equal(await r.serve(0, 0n, [{ addr: 0x200000n, len: 513 }]), 1, "the status byte counted, not written");
  assert.equal(r.queue.brokenBy, undefined);
  const ok = await stale(0x20000n, 513);
  assert.equal(await r.serve(0, 0n, [{ addr: 0x20000n, len: 513 }]), 513);
  assert.deepEqual((await ok()).subarray(0, 512), disk.subarray(0, 512));
});

test("with EVENT_IDX a batch is published every 4 chains and at its end; without it, once at its end", async () => {
  for (const [eventIdx, base, expected] of [
    [true, 0x6000n, [4, 8, 10]],
    [false, 0x7000n, [10]],
  ] as const) {
    const addresses = { desc: base, avail: base + 0x200n, used: base + 0x400n };
    const driver = new SplitDriver({ size: 32, memory: ram, addresses, eventIdx });
    const queue = new SplitQueue({ size: 32, memory, addresses, eventIdx });
    queue.start(0);
    const device = ramBlk(patternDisk());
    // What the driver can see at each publish: the used index after it.
    const seen: number[] = [];
    const ctx: QueueContext = {
      index: 0,
      queue,
      memory,
      notify: () => {
        queue.publishUsed();
        seen.push(driver.pendingUsed());
      },
      fail: () => undefined,
    };
    const head = new Uint8Array(16); // T_IN, sector 0
    await ram.write(guestAddress(0x10000n), head);
    for (let i = 0; i < 10; i++) driver.add([{ addr: 0x10000n, len: 16 }], [{ addr: 0x20000n + BigInt(i) * 0x400n, len: 513 }]);
    driver.publish();
    await device.processQueue(ctx);
    assert.deepEqual(
      seen.filter((v, i) => v !== seen[i - 1]),
      expected,
      `eventIdx ${eventIdx}`,
    );
    assert.deepEqual(
      driver.collectUsed().map((u) => u.len),
      new Array(10).fill(513),
    );
  }
});
