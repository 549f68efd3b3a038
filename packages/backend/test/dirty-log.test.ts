/**
 * Dirty page logging (docs/protocol.md#dirty-page-logging): the log bitmap SET_LOG_BASE maps, the
 * ring runner marking chain writes by guest-physical address and used-ring writes at the ring's
 * `log_guest_addr`, and a scripted front-end turning logging on and off with LOG_ALL over a socket.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { closeSync, readSync, writeSync } from "node:fs";
import { GuestRam, guestAddress } from "@vhostkit/regions";
import { Endpoint, EventFd, socketPair } from "@vhostkit/transport";
import { sealedMemfd } from "@vhostkit/transport/sys";
import { SplitDriver } from "@vhostkit/virtqueue/driver";
import { ProtocolFeature, VirtioFeature, VRING_F_LOG } from "@vhostkit/wire";
import { DirtyLog } from "../src/dirty-log.js";
import { serveFd, type BackendEvent } from "../src/index.js";
import { refused, reverser, rig } from "./helpers/ring-rig.js";
import { ScriptedFrontend } from "./helpers/scripted-frontend.js";

const MiB = 1n << 20n;
/** Log bytes for 1 MiB of guest memory: 256 pages, 32 bytes. */
const LOG_BYTES = 32n;

/** A sealed memfd of `size` bytes for a log, and the pages set in its first `bytes` bytes. */
function logFile(size = LOG_BYTES) {
  const fd = sealedMemfd("test-log", size);
  assert.ok(fd >= 0);
  return {
    fd,
    /** The page numbers whose bit is set. */
    pages(): number[] {
      const b = new Uint8Array(Number(size));
      readSync(fd, b, 0, b.length, 0);
      const out: number[] = [];
      for (let i = 0; i < b.length * 8; i++) if (((b[Math.floor(i / 8)]! >> (i % 8)) & 1) === 1) out.push(i);
      return out;
    },
    close: () => closeSync(fd),
  };
}

test("DirtyLog: one bit per 4 KiB page by guest-physical address, numbers and bigints; pages past the log are not recorded", () => {
  const f = logFile();
  const log = DirtyLog.map("SET_LOG_BASE", { mmapSize: LOG_BYTES, mmapOffset: 0n }, f.fd);
  try {
    log.mark(0, 1);
    log.mark(0x3fff, 2); // pages 3 and 4
    log.mark(0x9000n, 0x2000); // pages 9 and 10
    log.mark(0xff000, 0x10000); // page 255, then past the end
    log.mark(1n << 60n, 8); // far past the end
    log.mark(0x20000, 0); // nothing
    assert.deepEqual(f.pages(), [0, 3, 4, 9, 10, 255]);
    assert.ok(log.isMarked(0x9abc) && !log.isMarked(0x5000));
    log.dispose();
    log.dispose();
    log.mark(0x5000, 1); // after dispose: nothing, nothing touched
    assert.deepEqual(f.pages(), [0, 3, 4, 9, 10, 255]);
  } finally {
    log.dispose();
    f.close();
  }
});

test("DirtyLog: a log at an unaligned offset; a zero or huge size, a file too short and an fd that is no file are refused (PROTOCOL)", () => {
  const f = logFile(8192n);
  const borrowed = (fd: number) => fd;
  try {
    const log = DirtyLog.map("SET_LOG_BASE", { mmapSize: 16n, mmapOffset: 4100n }, borrowed(f.fd));
    log.mark(0x8000, 1); // page 8: byte 1 of the log, file byte 4101
    log.dispose();
    const b = new Uint8Array(2);
    readSync(f.fd, b, 0, 2, 4100);
    assert.deepEqual([...b], [0, 1]);
    assert.throws(() => DirtyLog.map("SET_LOG_BASE", { mmapSize: 0n, mmapOffset: 0n }, borrowed(f.fd)), refused("PROTOCOL", /mmap_size 0x0 not in/));
    assert.throws(() => DirtyLog.map("SET_LOG_BASE", { mmapSize: 1n << 40n, mmapOffset: 0n }, borrowed(f.fd)), refused("PROTOCOL", /mmap_size/));
    assert.throws(
      () => DirtyLog.map("SET_LOG_BASE", { mmapSize: 8192n, mmapOffset: 4096n }, borrowed(f.fd)),
      refused("PROTOCOL", /file of 0x2000 bytes, log ends at 0x3000/),
    );
    const e = EventFd.create();
    try {
      assert.throws(() => DirtyLog.map("SET_LOG_BASE", { mmapSize: 8n, mmapOffset: 0n }, borrowed(e.fd)), refused("PROTOCOL", /not a regular file/));
    } finally {
      e.close();
    }
  } finally {
    f.close();
  }
});

test("ring runner: with a log, chain writes are marked by guest-physical address and the used ring at log_guest_addr; without, nothing", async () => {
  const r = rig();
  const f = logFile();
  const log = DirtyLog.map("SET_LOG_BASE", { mmapSize: LOG_BYTES, mmapOffset: 0n }, f.fd);
  try {
    const { driver, call, kick } = r.start(0, 8); // used ring at GPA 0x1400
    const u = (a: bigint) => r.ram.userAddressOf(guestAddress(a));
    // Logging off: the reply is written, nothing is marked.
    const first = await r.request(driver, 0, "abc");
    kick.signal();
    await call.wait();
    assert.equal(await first(), "cba");
    assert.deepEqual(f.pages(), []);
    // As QEMU does: SET_VRING_ADDR with the log flag on the started ring (same addresses), log_guest_addr
    // pointing elsewhere (page 0x70) to tell it from the ring's own address.
    r.runner.setAddresses("SET_VRING_ADDR", 0, { desc: u(0x1000n), avail: u(0x1200n), used: u(0x1400n) }, VRING_F_LOG, 0x70000n);
    r.runner.setDirtyLog(log);
    const second = await r.request(driver, 0x200, "hello"); // reply at 0x10000 + 0x20000 + 0x80: page 0x30
    kick.signal();
    await call.wait();
    assert.equal(await second(), "olleh");
    assert.deepEqual(f.pages(), [0x30, 0x70]);
    const third = await r.request(driver, 0x10, "xyz"); // reply at 0x11080: page 0x11
    kick.signal();
    await call.wait();
    assert.equal(await third(), "zyx");
    assert.deepEqual(f.pages(), [0x11, 0x30, 0x70]);
    // Logging off again (SET_FEATURES without LOG_ALL): the next write is not marked.
    r.runner.setDirtyLog(undefined);
    const fourth = await r.request(driver, 0x40, "off"); // reply page 0x14
    kick.signal();
    await call.wait();
    assert.equal(await fourth(), "ffo");
    assert.deepEqual(f.pages(), [0x11, 0x30, 0x70]);
    // A started ring keeps its addresses: changing them is refused.
    assert.throws(
      () => r.runner.setAddresses("SET_VRING_ADDR", 0, { desc: u(0x2000n), avail: u(0x1200n), used: u(0x1400n) }, 0),
      refused("PROTOCOL", /vring 0 is started/),
    );
  } finally {
    await r.dispose();
    log.dispose();
    f.close();
  }
});

test("ring runner, packed ring: chain writes, the device area at log_guest_addr and the descriptor ring (used descriptors) at its guest-physical address are marked", async () => {
  const r = rig({ packed: true });
  const f = logFile();
  const log = DirtyLog.map("SET_LOG_BASE", { mmapSize: LOG_BYTES, mmapOffset: 0n }, f.fd);
  try {
    const { driver, call, kick } = r.start(1, 8); // descriptor ring at GPA 0x2000 (page 2), device area at 0x2400
    const u = (a: bigint) => r.ram.userAddressOf(guestAddress(a));
    const first = await r.request(driver, 0, "abc");
    kick.signal();
    await call.wait();
    assert.equal(await first(), "cba");
    assert.deepEqual(f.pages(), [], "logging off: nothing marked");
    // log_guest_addr at page 0x70, not the device area's own page, to tell the two apart.
    r.runner.setAddresses("SET_VRING_ADDR", 1, { desc: u(0x2000n), avail: u(0x2200n), used: u(0x2400n) }, VRING_F_LOG, 0x70000n);
    r.runner.setDirtyLog(log);
    const second = await r.request(driver, 0x200, "hello"); // reply at 0x30080: page 0x30
    kick.signal();
    await call.wait();
    assert.equal(await second(), "olleh");
    assert.deepEqual(f.pages(), [2, 0x30, 0x70]);
    // The region goes and comes back (QEMU re-adds what it changes): the descriptor ring is found again.
    const b = new Uint8Array(Number(LOG_BYTES));
    const clear = () => {
      b.fill(0);
      writeSync(f.fd, b, 0, b.length, 0);
    };
    clear();
    r.removeRam();
    r.addRam();
    r.runner.remap();
    const third = await r.request(driver, 0x10, "xyz"); // reply at 0x11080: page 0x11
    kick.signal();
    await call.wait();
    assert.equal(await third(), "zyx");
    assert.deepEqual(f.pages(), [2, 0x11, 0x70]);
    // Without the flag only the chain writes are marked.
    clear();
    r.runner.setAddresses("SET_VRING_ADDR", 1, { desc: u(0x2000n), avail: u(0x2200n), used: u(0x2400n) }, 0);
    const fourth = await r.request(driver, 0x40, "abc"); // reply page 0x14
    kick.signal();
    await call.wait();
    assert.equal(await fourth(), "cba");
    assert.deepEqual(f.pages(), [0x14]);
  } finally {
    await r.dispose();
    log.dispose();
    f.close();
  }
});

test("socket: LOG_ALL and LOG_SHMFD offered; SET_LOG_BASE answered and its fd mapped; logging follows LOG_ALL in SET_FEATURES; a bad log drops the front-end", async () => {
  const [mine, theirs] = socketPair();
  const fe = new ScriptedFrontend(new Endpoint(mine));
  const events: BackendEvent[] = [];
  const done = serveFd(theirs, { ...reverser(), features: 0n }, { onEvent: (e) => events.push(e) });
  const ram = new GuestRam({ blocks: [{ guestPhysAddr: 0n, size: MiB }] });
  const f = logFile();
  const call = EventFd.create();
  const kick = EventFd.create();
  const logEvent = EventFd.create();
  try {
    assert.ok(((await fe.get("GET_FEATURES")) as bigint) & VirtioFeature.LOG_ALL);
    assert.ok(((await fe.get("GET_PROTOCOL_FEATURES")) as bigint) & ProtocolFeature.LOG_SHMFD);
    assert.equal(await fe.ack("SET_PROTOCOL_FEATURES", ProtocolFeature.REPLY_ACK | ProtocolFeature.CONFIGURE_MEM_SLOTS | ProtocolFeature.LOG_SHMFD), 0n);
    const base = VirtioFeature.VERSION_1 | VirtioFeature.PROTOCOL_FEATURES;
    assert.equal(await fe.ack("SET_FEATURES", base), 0n);
    const b = ram.memoryTable()[0]!;
    assert.equal(await fe.ack("ADD_MEM_REG", { guestPhysAddr: 0n, memorySize: MiB, userAddr: b.userspaceAddr, mmapOffset: 0n }, [b.fd]), 0n);
    const u = (a: bigint) => ram.userAddressOf(guestAddress(a));
    const rings = { desc: 0x1000n, avail: 0x1200n, used: 0x1400n };
    const driver = new SplitDriver({ size: 8, memory: ram, addresses: rings, reset: true });
    const addr = (flags: number) => ({ index: 0, flags, descAddr: u(rings.desc), usedAddr: u(rings.used), availAddr: u(rings.avail), logAddr: rings.used });
    assert.equal(await fe.ack("SET_VRING_NUM", { index: 0, num: 8 }), 0n);
    assert.equal(await fe.ack("SET_VRING_ADDR", addr(0)), 0n);
    assert.equal(await fe.ack("SET_VRING_CALL", { index: 0, noFd: false }, [call.fd]), 0n);
    assert.equal(await fe.ack("SET_VRING_KICK", { index: 0, noFd: false }, [kick.fd]), 0n);
    assert.equal(await fe.ack("SET_VRING_ENABLE", { index: 0, num: 1 }), 0n);
    const request = async (at: bigint, text: string) => {
      await ram.write(guestAddress(at), new TextEncoder().encode(text));
      driver.add([{ addr: at, len: text.length }], [{ addr: at + 0x80n, len: text.length }]);
      driver.publish();
      kick.signal();
      while (driver.collectUsed().length === 0) await call.wait();
    };
    // As QEMU 7.2 starts a migration: SET_LOG_BASE (always answered with LOG_SHMFD, no NEED_REPLY), SET_FEATURES + LOG_ALL, SET_VRING_ADDR + LOG.
    await fe.send("SET_LOG_BASE", { mmapSize: LOG_BYTES, mmapOffset: 0n }, { fds: [f.fd] });
    assert.equal((await fe.reply("SET_LOG_BASE")).value, 0n);
    assert.equal(await fe.ack("SET_LOG_FD", undefined, [logEvent.fd]), 0n);
    await request(0x20000n, "before"); // LOG_ALL not acknowledged yet: not logged
    assert.deepEqual(f.pages(), []);
    assert.equal(await fe.ack("SET_FEATURES", base | VirtioFeature.LOG_ALL), 0n);
    assert.equal(await fe.ack("SET_VRING_ADDR", addr(VRING_F_LOG)), 0n);
    await request(0x30000n, "during"); // reply page 0x30, used ring page 1
    assert.deepEqual(f.pages(), [0x1, 0x30]);
    assert.equal(await fe.ack("SET_VRING_ADDR", addr(0)), 0n);
    assert.equal(await fe.ack("SET_FEATURES", base), 0n);
    await request(0x50000n, "after");
    assert.deepEqual(f.pages(), [0x1, 0x30]);
    // A log the file cannot hold: SET_LOG_BASE is always answered, so a refusal drops the front-end.
    await fe.send("SET_LOG_BASE", { mmapSize: 4096n, mmapOffset: 0n }, { fds: [f.fd] });
    await done;
    const dropped = events.find((e) => e.kind === "dropped");
    assert.ok(
      dropped?.kind === "dropped" && /file of 0x20 bytes, log ends at 0x1000/.test(dropped.error.message),
      dropped?.kind === "dropped" ? dropped.error.message : "not dropped",
    );
  } finally {
    fe.close();
    await done;
    for (const e of [call, kick, logEvent]) e.close();
    f.close();
    ram.dispose();
  }
});
