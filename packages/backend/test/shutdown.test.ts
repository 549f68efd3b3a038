/**
 * Graceful shutdown (what a back-end does on SIGTERM): `BackendServer.shutdown` stops accepting,
 * lets the running queue handler finish its request, then drops the front-end with every fd closed;
 * a handler that never returns delays it by `graceMs` at most. The RAM blk example does this on
 * SIGTERM and exits 0, its `--file` disk holding what was written.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { GuestRam, guestAddress } from "@vhostkit/regions";
import { connect, EventFd } from "@vhostkit/transport";
import { ChainBatch } from "@vhostkit/virtqueue";
import { ProtocolFeature, VirtioFeature } from "@vhostkit/wire";
import { serve, type DeviceBackend } from "../src/index.js";
import { DeviceProcess, ScriptedFrontend, startRing } from "./helpers/scripted-frontend.js";

const RAM_BLK = fileURLToPath(new URL("../examples/ram-blk.mjs", import.meta.url));
const MiB = 1n << 20n;
const fdCount = (): number => readdirSync("/proc/self/fd").length;

/** A device whose handler completes each chain after `hold` resolves; `entered` resolves when it first runs. */
function slowDevice(hold: () => Promise<void>) {
  let entered!: () => void;
  const started = new Promise<void>((r) => (entered = r));
  const batch = new ChainBatch(16);
  const device: DeviceBackend = {
    features: 0n,
    queueCount: 1,
    maxQueueSize: 64,
    async processQueue({ queue }) {
      while (queue.pop(batch) > 0) {
        entered();
        await hold();
        queue.pushUsed(batch);
      }
    },
  };
  return { device, started };
}

/** Negotiation, 1 MiB of RAM and a started ring; one chain submitted and kicked. */
async function oneRequest(fe: ScriptedFrontend, ram: GuestRam) {
  assert.equal(await fe.ack("SET_PROTOCOL_FEATURES", ProtocolFeature.REPLY_ACK | ProtocolFeature.CONFIGURE_MEM_SLOTS), 0n);
  assert.equal(await fe.ack("SET_FEATURES", VirtioFeature.VERSION_1 | VirtioFeature.PROTOCOL_FEATURES), 0n);
  const b = ram.memoryTable()[0]!;
  assert.equal(await fe.ack("ADD_MEM_REG", { guestPhysAddr: 0n, memorySize: MiB, userAddr: b.userspaceAddr, mmapOffset: 0n }, [b.fd]), 0n);
  const ring = await startRing(fe, ram);
  ring.driver.add([{ addr: guestAddress(0x8000n), len: 16 }], []);
  ring.driver.publish();
  ring.kick.signal();
  return ring;
}

test("shutdown lets the running handler finish, then closes the connection and every fd; the socket stops accepting", { timeout: 30000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), "vhostkit-shutdown-"));
  const ram = new GuestRam({ blocks: [{ guestPhysAddr: 0n, size: MiB }] });
  const warm = EventFd.create(); // the shared reactor's own fds exist from here on
  await Promise.race([warm.wait(), new Promise((r) => setTimeout(r, 1))]);
  warm.close();
  const before = fdCount();
  try {
    let release!: () => void;
    const { device, started } = slowDevice(() => new Promise<void>((r) => (release = r)));
    const server = serve(join(dir, "s.sock"), device);
    const fe = await ScriptedFrontend.connect(server.path);
    const ring = await oneRequest(fe, ram);
    await started;
    const stopped = server.shutdown({ graceMs: 10_000 });
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(ring.driver.collectUsed().length, 0, "still running");
    release();
    await stopped;
    assert.equal(ring.driver.collectUsed().length, 1, "the running request completed before the connection dropped");
    await assert.rejects(fe.ep.recv(), "the front-end sees the connection end");
    await assert.rejects(connect(server.path), "no longer accepting");
    fe.close();
    ring.call.close();
    ring.kick.close();
    assert.equal(fdCount(), before, "every fd of the connection closed");
  } finally {
    ram.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a handler that never returns delays shutdown by graceMs at most", { timeout: 30000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), "vhostkit-shutdown-"));
  const ram = new GuestRam({ blocks: [{ guestPhysAddr: 0n, size: MiB }] });
  try {
    const { device, started } = slowDevice(() => new Promise<void>(() => undefined));
    const server = serve(join(dir, "s.sock"), device);
    const fe = await ScriptedFrontend.connect(server.path);
    const ring = await oneRequest(fe, ram);
    await started;
    const t0 = performance.now();
    await server.shutdown({ graceMs: 300 });
    const took = performance.now() - t0;
    assert.ok(took >= 250 && took < 3000, `${took} ms`);
    await assert.rejects(fe.ep.recv());
    fe.close();
    ring.call.close();
    ring.kick.close();
  } finally {
    ram.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the RAM blk example exits 0 on SIGTERM, its --file disk holding what was written", { timeout: 30000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), "vhostkit-shutdown-"));
  const file = join(dir, "disk.img");
  const dev = new DeviceProcess(RAM_BLK, ["--size-mib", "1", "--file", file]);
  const ram = new GuestRam({ blocks: [{ guestPhysAddr: 0n, size: MiB }] });
  try {
    await dev.line("listening");
    const fe = await ScriptedFrontend.connect(dev.socket);
    await fe.get("GET_FEATURES");
    await fe.get("GET_PROTOCOL_FEATURES");
    const ring = await oneRequest(fe, ram); // a 16-byte chain: refused by the device (malformed), completed
    await ring.call.wait();
    ring.driver.collectUsed();
    // A write of one sector with the pattern 0x5a at sector 3.
    await ram.write(guestAddress(0x9000n), Uint8Array.of(1, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0));
    await ram.write(guestAddress(0xa000n), new Uint8Array(512).fill(0x5a));
    ring.driver.add(
      [
        { addr: guestAddress(0x9000n), len: 16 },
        { addr: guestAddress(0xa000n), len: 512 },
      ],
      [{ addr: guestAddress(0xb000n), len: 1 }],
    );
    ring.driver.publish();
    ring.kick.signal();
    await ring.call.wait();
    assert.equal(ring.driver.collectUsed().length, 1);
    dev.child.kill("SIGTERM");
    const code = await new Promise((r) => dev.child.once("exit", (c) => r(c)));
    assert.equal(code, 0);
    const disk = readFileSync(file);
    assert.equal(disk.length, 1 << 20);
    assert.ok(disk.subarray(3 * 512, 4 * 512).every((b) => b === 0x5a));
    assert.ok(disk.subarray(0, 3 * 512).every((b) => b === 0));
    fe.close();
    ring.call.close();
    ring.kick.close();
  } finally {
    ram.dispose();
    await dev.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
