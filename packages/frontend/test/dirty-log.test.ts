/**
 * Dirty page logging from the front-end (docs/protocol.md#dirty-page-logging) against the RAM blk example of
 * @vhostkit/backend in its own process, on split and packed rings: Device.startDirtyLog hands over
 * a sealed memfd log sized for guest RAM (SET_LOG_BASE, SET_LOG_FD on request, SET_FEATURES with LOG_ALL,
 * SET_VRING_ADDR with the log flag); the pages the device wrote — a read's data and status byte,
 * a write's status byte, the used ring (packed: the descriptor ring and the device area) — are
 * exactly the ones marked, and nothing is marked once logging stops.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { guestAddress } from "@vhostkit/regions";
import { VirtioFeature } from "@vhostkit/wire";
import { BlkDriver, BlkRequestType, Guest, LOG_PAGE_SIZE, dirtyLogSize, isFrontendError, type DriverQueue } from "../src/index.js";
import { pagesOf, ringPages, union } from "./helpers/dirty-pages.js";
import { startRamBlk } from "./helpers/ram-blk-process.js";

const PAGE = LOG_PAGE_SIZE;
const RAM = 16n << 20n;

/**
 * One virtio-blk request with buffers where the test puts them: the 16-byte header on its own page,
 * `data` (a read's destination or a write's source) starting 0x800 into a page run, the status byte
 * on a page of its own. Returns the status and the data buffer's address.
 */
async function request(guest: Guest, q: DriverQueue, type: number, sector: bigint, data: Uint8Array | number) {
  const len = typeof data === "number" ? data : data.byteLength;
  const header = guest.allocator.alloc(PAGE, PAGE);
  const buf = guest.allocator.alloc(len + 2 * PAGE, PAGE);
  const status = guest.allocator.alloc(PAGE, PAGE);
  const dataAddr = buf + 0x800n;
  try {
    const h = new Uint8Array(16);
    new DataView(h.buffer).setUint32(0, type, true);
    new DataView(h.buffer).setBigUint64(8, sector, true);
    await guest.ram.write(header, h);
    if (typeof data !== "number") await guest.ram.write(guestAddress(dataAddr), data);
    await guest.ram.write(status, Uint8Array.of(0xff));
    const readable = [{ addr: header, len: 16 }, ...(typeof data === "number" ? [] : [{ addr: dataAddr, len }])];
    const writable = [...(typeof data === "number" ? [{ addr: dataAddr, len }] : []), { addr: status as bigint, len: 1 }];
    await q.submit(readable, writable);
    const s = new Uint8Array(1);
    await guest.ram.read(status, s);
    const out = new Uint8Array(len);
    await guest.ram.read(guestAddress(dataAddr), out);
    return { status: s[0], data: out, dataPages: pagesOf(dataAddr, len), statusPages: pagesOf(status, 1) };
  } finally {
    for (const a of [header, buf, status]) guest.allocator.free(a);
  }
}

for (const packed of [false, true]) {
  const layout = packed ? "packed" : "split";
  test(`${layout} rings: the pages the RAM blk device writes while logging are exactly the ones marked; read-and-clear; none after stopDirtyLog`, {
    timeout: 60_000,
  }, async () => {
    const blk = await startRamBlk(["--size-mib", "2"]);
    const guest = new Guest({ ramSize: RAM });
    try {
      const device = await guest.addDevice({ socketPath: blk.socket, dirtyLog: true, packedRing: packed });
      assert.notEqual(device.info.features & VirtioFeature.LOG_ALL, 0n, "the back-end offers LOG_ALL");
      const driver = await BlkDriver.attach(device);
      const q = driver.queue;
      assert.equal(q.packed, packed);
      const pattern = randomBytes(0x2000);
      await driver.write(64n, pattern); // before logging: not recorded anywhere
      const log = await device.startDirtyLog();
      try {
        assert.equal(log.size, dirtyLogSize(RAM));
        assert.equal(log.size, 512n, "16 MiB of RAM: 4096 pages, 512 bytes");
        assert.equal((device.ackedFeatures ?? 0n) & VirtioFeature.LOG_ALL, 0n, "ackedFeatures stays the driver's set");
        assert.deepEqual(log.takeDirtyPages(), [], "nothing written yet");
        // A read: the device writes the data (0x2000 bytes from 0x800 into a page: three pages) and the status byte.
        const read = await request(guest, q, BlkRequestType.IN, 64n, 0x2000);
        assert.equal(read.status, 0);
        assert.deepEqual(read.data, new Uint8Array(pattern));
        assert.equal(read.dataPages.length, 3);
        assert.deepEqual(log.takeDirtyPages(), union(read.dataPages, read.statusPages, ringPages(q)));
        assert.deepEqual(log.takeDirtyPages(), [], "read and cleared");
        // A write: the device only reads the data; it writes the status byte and the ring.
        const write = await request(guest, q, BlkRequestType.OUT, 128n, randomBytes(0x1000));
        assert.equal(write.status, 0);
        assert.deepEqual(log.takeDirtyPages(), union(write.statusPages, ringPages(q)));
        await assert.rejects(device.startDirtyLog(), (e: unknown) => isFrontendError(e) && e.code === "BAD_ARGUMENT" && /already logging/.test(e.message));
        // Logging off: the next read writes the same kinds of pages, none is marked.
        await device.stopDirtyLog();
        // Marks the device made before it took the stop in are legitimate (a packed ring's device
        // area is written when the ring goes idle, after the last request completed): drain them.
        log.takeDirtyPages();
        const after = await request(guest, q, BlkRequestType.IN, 64n, 0x2000);
        assert.deepEqual(after.data, new Uint8Array(pattern));
        assert.deepEqual(log.takeDirtyPages(), []);
        // On again with a fresh log, this time with SET_LOG_FD too (which the RAM blk device accepts): marking resumes.
        const again = await device.startDirtyLog({ sendLogFd: true });
        try {
          const r = await request(guest, q, BlkRequestType.IN, 64n, 0x100);
          assert.deepEqual(again.takeDirtyPages(), union(r.dataPages, r.statusPages, ringPages(q)));
          assert.deepEqual(log.takeDirtyPages(), [], "the replaced log is left alone");
        } finally {
          await device.stopDirtyLog();
          again.dispose();
        }
      } finally {
        log.dispose();
        log.dispose();
      }
      assert.deepEqual(log.takeDirtyPages(), [], "disposed: empty");
    } finally {
      await guest.close();
      await blk.stop();
    }
  });
}

test("one RAM blk process serving eight front-ends in turn, split and packed rings, each logging after hundreds of requests: every connection's writes are marked", {
  timeout: 120_000,
}, async () => {
  // Each connection maps a log of its own in the same back-end process (under Bun 1.4.5 the
  // back-end's Atomics.or marks were lost on a later connection once its JIT had optimised them, seen
  // with one client process per connection as tools/bench runs them: it sets bits with plain stores now).
  const blk = await startRamBlk(["--size-mib", "2"]);
  const guest = new Guest({ ramSize: 64n << 20n });
  try {
    for (let i = 0; i < 8; i++) {
      const device = await guest.addDevice({ socketPath: blk.socket, dirtyLog: true, packedRing: i % 4 >= 2 });
      const driver = await BlkDriver.attach(device);
      for (let n = 0; n < 600; n++) await driver.read(BigInt(n % 64) * 8n, 8);
      const log = await device.startDirtyLog();
      try {
        for (let n = 0; n < 300; n++) await driver.read(BigInt(n % 64) * 8n, 8);
        assert.ok(log.takeDirtyPages().length > 0, `connection ${i}: reads marked`);
        const r = await request(guest, driver.queue, BlkRequestType.IN, 8n, 0x1000);
        assert.deepEqual(log.takeDirtyPages(), union(r.dataPages, r.statusPages, ringPages(driver.queue)), `connection ${i}`);
        await device.stopDirtyLog();
      } finally {
        log.dispose();
      }
      await device.close();
    }
  } finally {
    await guest.close();
    await blk.stop();
  }
});

test("--discard: a read writes only the status byte, through a view the device logs itself: that page and the ring are marked, not the data", {
  timeout: 60_000,
}, async () => {
  const blk = await startRamBlk(["--size-mib", "1", "--discard"]);
  const guest = new Guest({ ramSize: RAM });
  try {
    const device = await guest.addDevice({ socketPath: blk.socket, dirtyLog: true });
    const q = (await BlkDriver.attach(device)).queue;
    const log = await device.startDirtyLog();
    try {
      const r = await request(guest, q, BlkRequestType.IN, 0n, 0x2000);
      assert.equal(r.status, 0);
      assert.deepEqual(log.takeDirtyPages(), union(r.statusPages, ringPages(q)));
    } finally {
      log.dispose();
    }
  } finally {
    await guest.close();
    await blk.stop();
  }
});

test("startDirtyLog before start() is BAD_ARGUMENT; without dirtyLog: true (LOG_SHMFD not acknowledged) NEGOTIATION; a back-end run with --no-log offers no LOG_ALL", {
  timeout: 60_000,
}, async () => {
  const blk = await startRamBlk(["--size-mib", "1"]);
  const noLog = await startRamBlk(["--size-mib", "1", "--no-log"]);
  const guest = new Guest();
  try {
    const early = await guest.addDevice({ socketPath: blk.socket, dirtyLog: true });
    await assert.rejects(early.startDirtyLog(), (e: unknown) => isFrontendError(e) && e.code === "BAD_ARGUMENT" && /start the device first/.test(e.message));
    await early.close();
    const plain = await guest.addDevice({ socketPath: blk.socket });
    await BlkDriver.attach(plain);
    await assert.rejects(plain.startDirtyLog(), (e: unknown) => isFrontendError(e) && e.code === "NEGOTIATION" && /LOG_SHMFD/.test(e.message));
    const without = await guest.addDevice({ socketPath: noLog.socket, dirtyLog: true });
    await BlkDriver.attach(without);
    assert.equal(without.info.features & VirtioFeature.LOG_ALL, 0n);
    await assert.rejects(without.startDirtyLog(), (e: unknown) => isFrontendError(e) && e.code === "NEGOTIATION");
  } finally {
    await guest.close();
    await blk.stop();
    await noLog.stop();
  }
});
