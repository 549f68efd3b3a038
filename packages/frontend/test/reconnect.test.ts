/**
 * Automatic reconnect (docs/protocol.md#inflight-tracking-and-reconnect): a device with a
 * reconnect policy survives its back-end being killed mid-I/O. The RAM blk example (with `--file`,
 * so its disk survives) is killed with SIGKILL at queue depth 32 and started again on the same
 * socket; every request completes once and every block reads back what was written, on split and
 * on packed rings, with and without INFLIGHT_SHMFD, and the caller hears one event per reconnect. A back-end that comes back
 * without an acknowledged feature fails the device with FEATURES_WITHDRAWN, one that never comes
 * back with RECONNECT_FAILED.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { ProtocolFeature } from "@vhostkit/wire";
import { BlkDriver, Guest, SUPPORTED_PROTOCOL_FEATURES, isFrontendError, type ReconnectEvent } from "../src/index.js";
import { RestartableBlk } from "./helpers/restartable-blk.js";

const FEATURE_BACKEND = fileURLToPath(new URL("./fixtures/feature-backend.mjs", import.meta.url));
const POLICY = { initialDelayMs: 20, maxDelayMs: 200, attempts: 200 };

/** 32 workers, each writing then reading back its own 8 sectors `rounds` times; calls `midway` once after `at` verified blocks. */
async function workload(blk: BlkDriver, rounds: number, at: number, midway: () => Promise<void>): Promise<{ verified: number; mismatches: number }> {
  let verified = 0;
  let mismatches = 0;
  let fired: Promise<void> | undefined;
  await Promise.all(
    Array.from({ length: 32 }, async (_, w) => {
      for (let r = 0; r < rounds; r++) {
        const data = new Uint8Array(4096).map((_, i) => (w * 31 + r * 7 + i) & 0xff);
        await blk.write(BigInt(w * 8), data);
        const back = await blk.read(BigInt(w * 8), 8);
        if (back.every((b, i) => b === data[i])) verified++;
        else mismatches++;
        if (verified >= at && fired === undefined) fired = midway();
      }
    }),
  );
  await fired;
  return { verified, mismatches };
}

for (const [packed, inflight] of [
  [false, true],
  [false, false],
  [true, true],
  [true, false],
] as const) {
  test(`${packed ? "packed" : "split"} ring, ${inflight ? "with" : "without"} INFLIGHT_SHMFD: the device SIGKILLed at QD 32 and restarted; every request completes once, every block verified, one event`, {
    timeout: 60_000,
  }, async () => {
    const dev = new RestartableBlk(["--latency-ms", "1"]);
    const guest = new Guest({ ramSize: 16n << 20n });
    try {
      await dev.start();
      const device = await guest.addDevice({
        socketPath: dev.socket,
        reconnect: POLICY,
        packedRing: packed,
        ...(inflight ? {} : { protocolFeatures: SUPPORTED_PROTOCOL_FEATURES }),
      });
      assert.equal((device.info.ackedProtocolFeatures & ProtocolFeature.INFLIGHT_SHMFD) !== 0n, inflight);
      const events: ReconnectEvent[] = [];
      device.onReconnect((e) => events.push(e));
      const blk = await BlkDriver.attach(device, { queueSize: 64 });
      assert.equal(blk.queue.packed, packed);
      const result = await workload(blk, 30, 200, async () => {
        // The 200th verification lands just after a completion, when the back-end may have handed
        // back all it held; 10 ms later (1 ms per request) it is in the middle of the requests the
        // workers made available since, so the kill leaves some of them in flight.
        await new Promise((resolve) => setTimeout(resolve, 10));
        await dev.kill();
        await dev.start();
      });
      assert.deepEqual(result, { verified: 32 * 30, mismatches: 0 });
      assert.equal(device.reconnects, 1);
      assert.equal(events.length, 1);
      assert.equal(events[0]!.inflight, inflight);
      assert.equal(events[0]!.cause.code, "DISCONNECTED");
      assert.equal(device.failed, undefined);
      const expected = packed ? blk.queue.vringBase : (32 * 30 * 2) & 0xffff;
      const bases = await device.stop();
      assert.equal(bases.get(0), expected, "the device consumed exactly the chains the driver made available");
      const resubmitted = dev.lines.filter((l) => l.startsWith("event inflight queue 0")).map((l) => Number(l.split(" ").at(-1)));
      // The restarted back-end found the requests its predecessor held (each taking 1 ms, at QD 32) and served them again.
      if (inflight) assert.ok(resubmitted.length >= 2 && resubmitted.at(-1)! > 0, dev.lines.join("\n"));
      else assert.deepEqual(resubmitted, []);
      assert.ok(events[0]!.outstanding > 0, "the kill left requests outstanding");
    } finally {
      await guest.close();
      await dev.dispose();
    }
  });
}

/** The feature-backend fixture on `socket` offering `features`; resolves once it listens. */
async function featureBackend(socket: string, features: bigint): Promise<ChildProcess> {
  const child = spawn(process.execPath, [FEATURE_BACKEND, socket, features.toString(16)], { stdio: ["ignore", "pipe", "pipe"] });
  const kill = (): boolean => child.kill("SIGKILL");
  process.once("exit", kill);
  child.once("exit", () => process.off("exit", kill));
  child.stderr!.resume();
  await new Promise<void>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on("line", (l) => l === "listening" && resolve());
    child.once("exit", (code) => reject(new Error(`feature-backend exited (${code})`)));
  });
  return child;
}

/** SIGKILL and wait. */
async function killed(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  child.kill("SIGKILL");
  await exited;
}

test("a restarted back-end without a feature the driver acknowledged fails the device with FEATURES_WITHDRAWN", { timeout: 30_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), "vhostkit-reconnect-"));
  const socket = join(dir, "dev.sock");
  let backend = await featureBackend(socket, 1n << 5n);
  const guest = new Guest({ ramSize: 4n << 20n });
  try {
    const device = await guest.addDevice({ socketPath: socket, reconnect: POLICY });
    const [queue] = await device.start({ features: 1n << 5n });
    assert.equal((device.ackedFeatures ?? 0n) & (1n << 5n), 1n << 5n);
    await killed(backend);
    backend = await featureBackend(socket, 0n);
    // This back-end has no channel: the hang-up of the main socket is seen once the device waits for something.
    const request = queue!.transfer([new Uint8Array(16)], [1]);
    const failure = await device.failure;
    assert.equal(failure.code, "FEATURES_WITHDRAWN", failure.message);
    await assert.rejects(request, (e: unknown) => isFrontendError(e) && e.code === "DEVICE_FAILED");
    assert.equal(device.reconnects, 0);
  } finally {
    await guest.close();
    await killed(backend);
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a back-end that never comes back fails the device with RECONNECT_FAILED; requests waiting meanwhile reject", { timeout: 30_000 }, async () => {
  const dev = new RestartableBlk();
  const guest = new Guest({ ramSize: 4n << 20n });
  try {
    await dev.start();
    const device = await guest.addDevice({ socketPath: dev.socket, reconnect: { initialDelayMs: 5, maxDelayMs: 20, attempts: 4 } });
    const blk = await BlkDriver.attach(device, { queueSize: 16 });
    await dev.kill();
    const waiting = blk.read(0n, 1);
    const failure = await device.failure;
    assert.equal(failure.code, "RECONNECT_FAILED", failure.message);
    await assert.rejects(waiting, (e: unknown) => isFrontendError(e) && e.code === "DEVICE_FAILED");
  } finally {
    await guest.close();
    await dev.dispose();
  }
});
