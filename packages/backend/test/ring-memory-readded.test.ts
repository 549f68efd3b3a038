/**
 * QEMU updates a memory table by removing a region and adding it again (REM_MEM_REG, then
 * ADD_MEM_REG). When the region holds a started ring, the ring waits for its memory instead of
 * breaking: kicks while it is gone are held, and once the region is back the ring resumes at the
 * index it stopped at and serves them. A new call fd on a started ring is signalled once. A region
 * added and removed beside a started ring (a propagated shared-memory mapping: the ring is not
 * re-mapped for it) leaves the ring serving. RAM blk device in its own process.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { closeSync, openSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { GuestRam, guestAddress } from "@vhostkit/regions";
import { EventFd } from "@vhostkit/transport";
import { ProtocolFeature, VirtioFeature } from "@vhostkit/wire";
import { DeviceProcess, ScriptedFrontend, startRing } from "./helpers/scripted-frontend.js";

const RAM_BLK = fileURLToPath(new URL("../examples/ram-blk.mjs", import.meta.url));
const MiB = 1n << 20n;

/** Features with REPLY_ACK and CONFIGURE_MEM_SLOTS (regions come and go one by one). */
async function negotiate(fe: ScriptedFrontend): Promise<void> {
  await fe.get("GET_FEATURES");
  await fe.get("GET_PROTOCOL_FEATURES");
  assert.equal(await fe.ack("SET_PROTOCOL_FEATURES", ProtocolFeature.REPLY_ACK | ProtocolFeature.CONFIGURE_MEM_SLOTS), 0n);
  assert.equal(await fe.ack("SET_FEATURES", VirtioFeature.VERSION_1 | VirtioFeature.PROTOCOL_FEATURES), 0n);
}

test("a started ring whose region is removed and added again resumes and serves the kicks it missed", { timeout: 30000 }, async () => {
  await using dev = new DeviceProcess(RAM_BLK, ["--size-mib", "1", "--events"]);
  using ram = new GuestRam({ blocks: [{ guestPhysAddr: 0n, size: MiB }] });
  await dev.line("listening");
  using fe = await ScriptedFrontend.connect(dev.socket);
  await negotiate(fe);
  const block = ram.memoryTable()[0]!;
  const region = { guestPhysAddr: 0n, memorySize: MiB, userAddr: block.userspaceAddr, mmapOffset: 0n };
  assert.equal(await fe.ack("ADD_MEM_REG", region, [block.fd]), 0n);
  using ring = await startRing(fe, ram);
  const { driver, call, kick } = ring;
  using err = EventFd.create();
  assert.equal(await fe.ack("SET_VRING_ERR", { index: 0, noFd: false }, [err.fd]), 0n);
  const flush = async (): Promise<void> => {
    await ram.write(guestAddress(0x4000n), Uint8Array.of(4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)); // VIRTIO_BLK_T_FLUSH
    await ram.write(guestAddress(0x5000n), Uint8Array.of(0xff));
    driver.add([{ addr: guestAddress(0x4000n), len: 16 }], [{ addr: guestAddress(0x5000n), len: 1 }]);
    driver.publish();
    kick.signal();
  };
  const status = async (): Promise<number> => {
    const s = new Uint8Array(1);
    await ram.read(guestAddress(0x5000n), s);
    return s[0]!;
  };
  await flush();
  await call.wait();
  assert.equal(driver.collectUsed().length, 1, "served before the change");

  assert.equal(await fe.ack("REM_MEM_REG", region), 0n);
  await flush(); // the ring's memory is gone: this waits
  // A round trip: the kick was signalled before this request was sent, so by the reply the device
  // has seen it (and, with its ring's memory gone, held it).
  assert.equal(await fe.get("GET_QUEUE_NUM"), 1n);
  assert.equal(driver.collectUsed().length, 0, "nothing served while the ring's memory is gone");
  assert.equal(err.poll(), 0n, "and the ring is not broken");
  assert.equal(await status(), 0xff);

  assert.equal(await fe.ack("ADD_MEM_REG", region, [block.fd]), 0n);
  await call.wait();
  assert.equal(driver.collectUsed().length, 1, "the held request is served once the region is back");
  assert.equal(await status(), 0, "with status OK");
  // A new call fd for the started ring is signalled once: a completion published while the
  // driver watched no fd (or the old one) is not lost.
  using call2 = EventFd.create();
  assert.equal(await fe.ack("SET_VRING_CALL", { index: 0, noFd: false }, [call2.fd]), 0n);
  assert.equal(call2.poll(), 1n, "signalled by the time SET_VRING_CALL was acked");
  const readOnly = openSync("/dev/null", "r"); // cannot be signalled: refused, not installed
  try {
    assert.equal(await fe.ack("SET_VRING_CALL", { index: 0, noFd: false }, [readOnly]), 1n);
  } finally {
    closeSync(readOnly);
  }
  assert.deepEqual(await fe.get("GET_VRING_BASE", { index: 0, num: 0 }), { index: 0, num: 2 });
  assert.ok(!dev.lines.some((l) => l.includes("queue-broken")), dev.lines.join("\n"));
});

test("a started ring keeps serving across the ADD_MEM_REG and REM_MEM_REG of another region", { timeout: 30000 }, async () => {
  await using dev = new DeviceProcess(RAM_BLK, ["--size-mib", "1", "--events"]);
  using ram = new GuestRam({ blocks: [{ guestPhysAddr: 0n, size: MiB }] });
  using other = new GuestRam({ blocks: [{ guestPhysAddr: 4n * MiB, size: MiB }], userAddrBase: 1n << 44n });
  await dev.line("listening");
  using fe = await ScriptedFrontend.connect(dev.socket);
  await negotiate(fe);
  const block = ram.memoryTable()[0]!;
  assert.equal(await fe.ack("ADD_MEM_REG", { guestPhysAddr: 0n, memorySize: MiB, userAddr: block.userspaceAddr, mmapOffset: 0n }, [block.fd]), 0n);
  using ring = await startRing(fe, ram);
  const { driver, call, kick } = ring;
  // One 512-byte read of sector 0 into the RAM block each time: served means the ring still works.
  const read = async (): Promise<number> => {
    await ram.write(guestAddress(0x4000n), new Uint8Array(16)); // VIRTIO_BLK_T_IN, sector 0
    await ram.write(guestAddress(0x5200n), Uint8Array.of(0xff));
    driver.add(
      [{ addr: guestAddress(0x4000n), len: 16 }],
      [
        { addr: guestAddress(0x5000n), len: 512 },
        { addr: guestAddress(0x5200n), len: 1 },
      ],
    );
    driver.publish();
    kick.signal();
    await call.wait();
    const served = driver.collectUsed().length;
    const s = new Uint8Array(1);
    await ram.read(guestAddress(0x5200n), s);
    return served === 1 ? s[0]! : -1;
  };
  assert.equal(await read(), 0, "served before the change");
  const b = other.memoryTable()[0]!;
  const region = { guestPhysAddr: 4n * MiB, memorySize: MiB, userAddr: b.userspaceAddr, mmapOffset: 0n };
  assert.equal(await fe.ack("ADD_MEM_REG", region, [b.fd]), 0n);
  assert.equal(await read(), 0, "served after another region came");
  assert.equal(await fe.ack("REM_MEM_REG", region), 0n);
  assert.equal(await read(), 0, "served after it went");
  assert.deepEqual(await fe.get("GET_VRING_BASE", { index: 0, num: 0 }), { index: 0, num: 3 });
  assert.ok(!dev.lines.some((l) => l.includes("queue-broken")), dev.lines.join("\n"));
});
