/**
 * A queue handler waiting for a SHMEM_MAP reply must not stop the back-end from answering the
 * front-end's memory-table changes: QEMU answers a map, then updates every memory table — this
 * back-end's too — and blocks on each REM_MEM_REG / ADD_MEM_REG ack without reading the back-end
 * channel. Device in its own process (fixtures/map-in-handler.mjs); the front-end is played here.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { GuestRam, guestAddress } from "@vhostkit/regions";
import { sendAck, type Endpoint } from "@vhostkit/transport";
import { BackendRequest, ProtocolFeature, VirtioFeature } from "@vhostkit/wire";
import { backendChannel, DeviceProcess, ScriptedFrontend, startRing } from "./helpers/scripted-frontend.js";

const DEVICE = fileURLToPath(new URL("./fixtures/map-in-handler.mjs", import.meta.url));
const MiB = 1n << 20n;

/** Rejects after `ms` unless `p` settles first. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms)));
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

/** QEMU 11's handshake with REPLY_ACK, the back-end channel, memory slots and SHMEM. */
async function handshake(dev: DeviceProcess): Promise<{ fe: ScriptedFrontend; channel: Endpoint }> {
  const fe = await ScriptedFrontend.connect(dev.socket);
  await fe.get("GET_FEATURES");
  await fe.get("GET_PROTOCOL_FEATURES");
  const pf =
    ProtocolFeature.REPLY_ACK | ProtocolFeature.BACKEND_REQ | ProtocolFeature.BACKEND_SEND_FD | ProtocolFeature.CONFIGURE_MEM_SLOTS | ProtocolFeature.SHMEM;
  assert.equal(await fe.ack("SET_PROTOCOL_FEATURES", pf), 0n);
  const channel = await backendChannel(fe);
  assert.equal(await fe.ack("SET_OWNER"), 0n);
  assert.equal(await fe.ack("SET_FEATURES", VirtioFeature.VERSION_1 | VirtioFeature.PROTOCOL_FEATURES), 0n);
  return { fe, channel };
}

test("REM_MEM_REG and ADD_MEM_REG are acked while a queue handler waits for its map reply", { timeout: 30000 }, async () => {
  const dev = new DeviceProcess(DEVICE);
  try {
    await dev.line("listening");
    const { fe, channel } = await handshake(dev);
    // Two RAM regions: the ring and its buffers in the first; the second will be removed.
    const ram = new GuestRam({ blocks: [{ guestPhysAddr: 0n, size: 2n * MiB }] });
    const block = ram.memoryTable()[0]!;
    const second = { guestPhysAddr: MiB, memorySize: MiB, userAddr: block.userspaceAddr + MiB, mmapOffset: MiB };
    assert.equal(await fe.ack("ADD_MEM_REG", { guestPhysAddr: 0n, memorySize: MiB, userAddr: block.userspaceAddr, mmapOffset: 0n }, [block.fd]), 0n);
    assert.equal(await fe.ack("ADD_MEM_REG", second, [block.fd]), 0n);
    const { driver, call, kick } = await startRing(fe, ram);

    driver.add([{ addr: guestAddress(0x2000n), len: 16 }], []);
    driver.publish();
    kick.signal();
    const map = await within(channel.recv(), 5000, "SHMEM_MAP");
    assert.equal(map.request, BackendRequest.BACKEND_SHMEM_MAP);
    for (const f of map.fds) f.close();
    // The map is not answered yet: the handler waits. The table changes must be acked regardless.
    assert.equal(await within(fe.ack("REM_MEM_REG", second), 3000, "REM_MEM_REG"), 0n);
    assert.equal(await within(fe.ack("ADD_MEM_REG", second, [block.fd]), 3000, "ADD_MEM_REG"), 0n);
    // Now the map reply: the handler finishes its chain.
    const mapped = dev.next('"mapped"');
    await sendAck(channel, map.request, 0n);
    await within(mapped, 3000, "device mapped");
    await within(call.wait(), 3000, "used notification");
    assert.equal(driver.collectUsed().length, 1, "the chain completed after the memory table changed under it");
    fe.close();
    channel.close();
    call.close();
    kick.close();
    ram.dispose();
  } finally {
    await dev.stop();
  }
});

test("GET_VRING_BASE is answered while a handler waits for a map reply the front-end withholds until then (QEMU's order)", { timeout: 30000 }, async () => {
  const dev = new DeviceProcess(DEVICE);
  try {
    await dev.line("listening");
    const { fe, channel } = await handshake(dev);
    const ram = new GuestRam({ blocks: [{ guestPhysAddr: 0n, size: MiB }] });
    const block = ram.memoryTable()[0]!;
    assert.equal(await fe.ack("ADD_MEM_REG", { guestPhysAddr: 0n, memorySize: MiB, userAddr: block.userspaceAddr, mmapOffset: 0n }, [block.fd]), 0n);
    const first = await startRing(fe, ram);
    first.driver.add([{ addr: guestAddress(0x2000n), len: 16 }], []);
    first.driver.publish();
    first.kick.signal();
    const map = await within(channel.recv(), 5000, "SHMEM_MAP");
    for (const f of map.fds) f.close();
    // Like QEMU stopping the VM now: it sends GET_VRING_BASE and reads nothing else until answered.
    const failed = dev.next('"map-failed"');
    assert.deepEqual(await within(fe.get("GET_VRING_BASE", { index: 0, num: 0 }), 3000, "GET_VRING_BASE"), { index: 0, num: 1 });
    assert.match(await failed, /ABANDONED/, "the waiting map was abandoned (sent, outcome unknown), so the handler finished its chain");
    // Only now does the front-end read the back-end channel and answer the map (late).
    await sendAck(channel, map.request, 0n);

    // The channel is still in step: the next map after a restart is a fresh request, answered normally.
    assert.equal(await fe.ack("SET_VRING_BASE", { index: 0, num: 0 }), 0n);
    const again = await startRing(fe, ram);
    again.driver.add([{ addr: guestAddress(0x2000n), len: 16 }], []);
    again.driver.publish();
    again.kick.signal();
    const map2 = await within(channel.recv(), 5000, "second SHMEM_MAP");
    assert.equal(map2.request, BackendRequest.BACKEND_SHMEM_MAP);
    assert.equal(map2.fds.length, 1);
    for (const f of map2.fds) f.close();
    const mapped = dev.next('"mapped"');
    await sendAck(channel, map2.request, 0n);
    await within(mapped, 3000, "device mapped");
    await within(again.call.wait(), 3000, "used notification");
    assert.equal(again.driver.collectUsed().length, 1);
    fe.close();
    channel.close();
    for (const f of [first.call, first.kick, again.call, again.kick]) f.close();
    ram.dispose();
  } finally {
    await dev.stop();
  }
});
