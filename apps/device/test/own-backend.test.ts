import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { cli } from "./helpers/run-cli.js";
import { LineProcess } from "./helpers/line-process.js";
import { Guest, RawDriver, RngDriver, type BackendRequestOutcome } from "@vhostkit/frontend";

const FIXTURE = fileURLToPath(new URL("./fixtures/own-backend.mjs", import.meta.url));

const cleanups: (() => Promise<unknown>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

/** A fresh temp dir, removed after the tests. */
async function tempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * Starts @vhostkit/backend's device in a second process (runtime-neutral .mjs), stopped after the
 * tests; resolves once it listens. `next(step)` waits for the step's JSON line; `mapFailed` rejects
 * when the device reports that its SHMEM_MAP failed (race it with the wait for the map).
 */
async function startBackend(
  device: "rng" | "shmem",
  dialect = "upstream",
  at?: string,
): Promise<{ socket: string; proc: LineProcess; mapFailed(): Promise<never> }> {
  const socket = at ?? join(await tempDir("vhostkit-own-"), "dev.sock");
  const proc = new LineProcess(process.execPath, [FIXTURE, "--socket", socket, "--device", device, "--dialect", dialect]);
  cleanups.push(() => proc.stop());
  const next = (step: string): Promise<string> => proc.line((l) => (JSON.parse(l) as { step: string }).step === step);
  await next("listening");
  return { socket, proc, mapFailed: () => next("map-failed").then((l) => assert.fail(`the back-end's SHMEM_MAP failed: ${l}`)) };
}

describe("against vhostkit's own back-end framework", () => {
  test("rng: the CLI prints N random bytes; the driver reads more than one buffer's worth", async () => {
    const be = await startBackend("rng");
    const r = await cli("rng", "--socket", be.socket, "--bytes", "64");
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^[0-9a-f]{128}\n$/);
    const guest = new Guest();
    try {
      const rng = await RngDriver.attach(await guest.addDevice({ socketPath: be.socket }));
      const bytes = await rng.read(10_000);
      assert.equal(bytes.byteLength, 10_000);
      assert.ok(new Set(bytes).size > 200, "looks random");
    } finally {
      await guest.close();
    }
    const out = join(await tempDir("vhostkit-rng-"), "r.bin");
    const f = await cli("rng", "--socket", be.socket, "--bytes", "5000", "--out", out);
    assert.equal(f.code, 0, f.stderr);
    assert.equal((await readFile(out)).byteLength, 5000);
  });

  test("a killed back-end fails its device with a typed error; reconnect redoes the set-up", async () => {
    const first = await startBackend("rng");
    const guest = new Guest();
    try {
      const dev = await guest.addDevice({ socketPath: first.socket });
      const rng = await RngDriver.attach(dev);
      assert.equal((await rng.read(32)).byteLength, 32);
      first.proc.child.kill("SIGKILL");
      const err = await dev.failure;
      assert.equal(err.code, "DISCONNECTED");
      await assert.rejects(rng.read(1), (e: unknown) => e instanceof Error && "code" in e && e.code === "DEVICE_FAILED");
      await startBackend("rng", "upstream", first.socket);
      const again = await guest.reconnect(dev);
      assert.equal(guest.devices.length, 1);
      assert.equal((await (await RngDriver.attach(again)).read(64)).byteLength, 64);
    } finally {
      await guest.close();
    }
  });

  test("shmem: probe shows the shmids and sizes the back-end declared, per dialect; check is green", async () => {
    for (const dialect of ["upstream", "rust-vmm-0.16", "draft", "crosvm-legacy"]) {
      const be = await startBackend("shmem", dialect);
      const r = await cli("probe", "--socket", be.socket, "--dialect", dialect, "--json");
      assert.equal(r.code, 0, r.stderr);
      const o = JSON.parse(r.stdout) as { shmem: unknown; protocolFeatureNames: string[]; dialect: string };
      assert.deepEqual(o.shmem, [
        { shmid: 1, size: "0x200000" },
        { shmid: 4, size: "0x10000" },
      ]);
      assert.ok(o.protocolFeatureNames.includes("SHMEM"));
      assert.equal(o.dialect, dialect);
      const human = await cli("probe", "--socket", be.socket, "--dialect", dialect);
      assert.match(human.stdout, /shared memory regions\n\s+shmid\s+size\s+guest address\n\s+1\s+0x200000\s+0x100000000\n\s+4\s+0x10000\s+0x100200000/);
      const c = await cli("check", "--socket", be.socket, "--dialect", dialect, "--json");
      assert.equal(c.code, 0, c.stdout + c.stderr);
      const checks = (JSON.parse(c.stdout) as { checks: { name: string; status: string }[] }).checks;
      assert.equal(checks.find((x) => x.name === "shmem config sanity")?.status, "pass");
    }
  });

  test("shmem: in the wrong dialect the bits do not match and no regions are negotiated", async () => {
    const be = await startBackend("shmem", "rust-vmm-0.16");
    const r = await cli("probe", "--socket", be.socket, "--json");
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual((JSON.parse(r.stdout) as { shmem: unknown }).shmem, []);
  });

  for (const dialect of ["upstream", "crosvm-legacy"] as const) {
    test(`shmem (${dialect}): the back-end's SHMEM_MAP lands in the guest address space with its bytes`, async () => {
      const be = await startBackend("shmem", dialect);
      const guest = new Guest();
      try {
        let mapped!: () => void;
        const done = new Promise<void>((r) => (mapped = r));
        const device = await guest.addDevice({
          socketPath: be.socket,
          dialect,
          onBackendRequest: (o: BackendRequestOutcome) => {
            if ((o.name === "BACKEND_SHMEM_MAP" || o.name === "CROSVM_SHMEM_MAP") && o.ok) mapped();
          },
        });
        await RawDriver.attach(device);
        await Promise.race([done, be.mapFailed()]);
        const region = device.info.shmem.find((x) => x.shmid === 1);
        assert.ok(region !== undefined);
        const got = new Uint8Array(0x10000);
        await guest.space.read((region.guestPhysAddr + 0x10000n) as typeof region.guestPhysAddr, got);
        for (let i = 0; i < got.length; i += 4099) assert.equal(got[i], (i * 31 + 7) & 0xff);
        assert.equal(device.sharedMemory?.mappingCount, 1);
        await device.close();
        assert.equal(device.sharedMemory, undefined);
      } finally {
        await guest.close();
      }
    });
  }
});
