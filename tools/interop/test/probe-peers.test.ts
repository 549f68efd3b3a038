/**
 * `vhost-user-device probe` with no `--config-size` or `--device-type` against every back-end the
 * repository can run: qemu-storage-daemon 7.2 and 11.1, virtiofsd 7.2 (C) and 1.14 (Rust),
 * vhost-user-gpu 7.2, vhost-device-vsock 0.3, vhostkit-gpu and the RAM blk example. Each succeeds and reports what the
 * back-end advertises; the config space is found by searching down from 256 bytes whatever way the
 * back-end refuses a read that is too large (docs/protocol.md#device-config-space), or reported as
 * not offered.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { peerCommand, userfaultfdAvailable } from "@vhostkit/peers/peers";
import { startQsd } from "@vhostkit/peers/qsd";
import { cli } from "./helpers/cli.js";
import { LineProcess, withDeadline } from "./helpers/processes.js";
import { startVsockDevice } from "./helpers/vhost-device-vsock.js";
import { runningAsRoot, startVirtiofsd, type VirtiofsdKind } from "./helpers/virtiofsd.js";

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));

/** The `probe --json` object. */
interface Probe {
  readonly features: string;
  readonly protocolFeatures: string;
  readonly protocolFeatureNames: string[];
  readonly queueNum: number;
  readonly maxMemSlots: number | null;
  readonly config: string | null;
  readonly configStatus: string;
  readonly configFields: Record<string, string> | null;
  readonly shmem: { readonly shmid: number; readonly size: string }[];
}

async function probe(socket: string, ...extra: string[]): Promise<Probe> {
  const r = await cli(["probe", "--socket", socket, "--json", ...extra], 40_000);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as Probe;
}

const bytes = (p: Probe) => (p.config === null ? 0 : p.config.length / 2);

async function inTempDir<T>(prefix: string, run: (dir: string) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  try {
    return await run(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

for (const peer of ["bookworm", "sid"] as const) {
  test(`qemu-storage-daemon ${peer === "bookworm" ? "7.2" : "11.1"}: probe reports the blk export; 256 bytes refused, the ${peer === "bookworm" ? 60 : 96}-byte config found`, {
    timeout: 60_000,
  }, async () => {
    const qsd = await startQsd({ sizeBytes: 1024 * 1024, peer });
    try {
      const p = await probe(qsd.socketPath);
      if (peer === "bookworm") {
        assert.equal(p.features, "0x175007e46");
        const pageFault = userfaultfdAvailable() ? 1n << 8n : 0n;
        assert.equal(p.protocolFeatures, `0x${(0x8e2bn | pageFault).toString(16)}`);
      }
      assert.equal(p.queueNum, 1);
      assert.equal(p.configStatus, "discovered");
      assert.equal(bytes(p), peer === "bookworm" ? 60 : 96, "virtio_blk_config as each QEMU defines it");
      assert.equal(Buffer.from(p.config as string, "hex").readBigUInt64LE(0), 2048n, "capacity 2048 sectors");
      assert.deepEqual(p.shmem, []);
    } finally {
      await qsd.stop();
    }
  });
}

for (const kind of ["c-7.2", "rust-1.14"] as const satisfies readonly VirtiofsdKind[]) {
  test(`virtiofsd ${kind === "c-7.2" ? "7.2 (C)" : "1.14 (Rust)"}: probe reports 2 queues and no CONFIG${kind === "c-7.2" ? "" : " (without --tag)"}`, {
    timeout: 60_000,
  }, async () => {
    if (kind === "c-7.2" && !runningAsRoot()) {
      // virtiofsd 7.2 needs root (docs/virtio-fs.md#observed-servers): as an ordinary user it does
      // not start, which virtiofsd.test.ts shows; there is nothing here to probe.
      await inTempDir("vhostkit-probe-fs-", async (dir) => {
        mkdirSync(join(dir, "shared"));
        await assert.rejects(startVirtiofsd(kind, join(dir, "shared"), dir), /exited \(1\) before it listened/);
      });
      return;
    }
    await inTempDir("vhostkit-probe-fs-", async (dir) => {
      mkdirSync(join(dir, "shared"));
      const daemon = await startVirtiofsd(kind, join(dir, "shared"), dir);
      try {
        const p = await probe(daemon.socket);
        assert.equal(p.queueNum, 2, "hiprio and one request queue");
        if (kind === "c-7.2") {
          assert.deepEqual([p.features, p.protocolFeatures, p.configStatus, p.config], ["0x175000000", "0x8c2b", "not offered", null]);
        } else {
          // Without --tag, virtiofsd 1.14 offers no CONFIG either.
          assert.equal(p.configStatus, "not offered");
          assert.ok(!p.protocolFeatureNames.includes("CONFIG"));
        }
      } finally {
        await daemon.stop();
      }
    });
  });
}

test("virtiofsd 1.14 with --tag: CONFIG offered, the tag decoded with --device-type fs", { timeout: 60_000 }, async () => {
  await inTempDir("vhostkit-probe-fs-", async (dir) => {
    mkdirSync(join(dir, "shared"));
    const daemon = await startVirtiofsd("rust-1.14", join(dir, "shared"), dir, 20_000, ["--tag", "vhostkit"]);
    try {
      const p = await probe(daemon.socket, "--device-type", "fs");
      assert.equal(p.configStatus, "discovered");
      assert.ok(bytes(p) >= 40, `${bytes(p)} config bytes`);
      assert.deepEqual([p.configFields?.tag, p.configFields?.num_request_queues], ['"vhostkit"', "1"]);
    } finally {
      await daemon.stop();
    }
  });
});

test("vhost-device-vsock 0.3: a read past its 8-byte config comes back empty, so probe searches down to 8 and shows the guest CID", {
  timeout: 60_000,
}, async () => {
  await inTempDir("vhostkit-probe-vsock-", async (dir) => {
    const device = await startVsockDevice(dir, 7);
    try {
      const p = await probe(device.socket, "--device-type", "vsock");
      assert.deepEqual(
        [p.features, p.protocolFeatures, p.queueNum, p.configStatus, bytes(p), p.configFields?.guest_cid],
        ["0x161000000", "0x209", 3, "discovered", 8, "7"],
      );
      const text = await cli(["probe", "--socket", device.socket], 40_000);
      assert.equal(text.code, 0, text.stderr);
      assert.match(text.stdout, /^config +8 bytes \(the largest read the back-end accepts\)$/m);
      assert.match(text.stdout, /^queues +3$/m);
    } finally {
      await device.stop();
    }
  });
});

/**
 * Resolves once the socket file at `path` exists (the peer prints nothing when it listens, and it
 * serves one connection only, so a trial connect would use it up); checked every 20 ms.
 */
async function socketCreated(path: string): Promise<void> {
  while (!existsSync(path)) await new Promise((r) => setTimeout(r, 20));
}

test("vhost-user-gpu 7.2 (QEMU's C GPU back-end): probe reports 2 queues, no shared memory region and its 16-byte config", { timeout: 60_000 }, async () => {
  const [program, ...prefix] = peerCommand("bookworm", "vhost-user-gpu"); // not fetched: fails here, at once
  await inTempDir("vhostkit-probe-vug-", async (dir) => {
    const socket = join(dir, "gpu.sock");
    const gpu = new LineProcess(program as string, [...prefix, `--socket-path=${socket}`]);
    try {
      await withDeadline(
        Promise.race([socketCreated(socket), gpu.exited.then((c) => assert.fail(`vhost-user-gpu exited (${c}): ${gpu.stderr}`))]),
        20_000,
        "vhost-user-gpu to listen",
      );
      const p = await probe(socket, "--device-type", "gpu");
      const pageFault = userfaultfdAvailable() ? 0x100 : 0;
      assert.deepEqual(
        [p.features, p.protocolFeatures, p.queueNum, p.configStatus, bytes(p), p.shmem],
        ["0x175000000", `0x${(0x8e2b | pageFault).toString(16)}`, 2, "discovered", 16, []],
      );
    } finally {
      await gpu.stop();
    }
  });
});

test("vhostkit-gpu: probe reports shmid 1 and the config found by the search", { timeout: 60_000 }, async () => {
  const app = here("../../../apps/gpu-backend/");
  if (typeof (globalThis as { Bun?: unknown }).Bun === "undefined") {
    const b = spawnSync(here("../../../node_modules/.bin/tsc"), ["-b", app], { encoding: "utf8" });
    assert.equal(b.status, 0, `${b.stdout}${b.stderr}`);
  }
  await inTempDir("vhostkit-probe-gpu-", async (dir) => {
    const socket = join(dir, "gpu.sock");
    const gpu = new LineProcess(process.execPath, [join(app, "bin/vhostkit-gpu.mjs"), "--socket", socket, "--shm-size", "32M", "--events", "--sealed-memory"]);
    try {
      await withDeadline(gpu.line('"event":"listening"'), 20_000, "listening vhostkit-gpu");
      const p = await probe(socket, "--device-type", "gpu");
      assert.deepEqual(p.shmem, [{ shmid: 1, size: "0x2000000" }]);
      assert.equal(p.configStatus, "discovered");
      assert.ok(bytes(p) >= 16, `${bytes(p)} config bytes`);
      assert.equal(p.configFields?.num_scanouts, "1");
      assert.equal(p.queueNum, 2);
    } finally {
      await gpu.stop();
    }
  });
});

test("the RAM blk example: probe reports its blk config, found by the search", { timeout: 60_000 }, async () => {
  await inTempDir("vhostkit-probe-ramblk-", async (dir) => {
    const socket = join(dir, "blk.sock");
    const blk = new LineProcess(process.execPath, [here("../../../packages/backend/examples/ram-blk.mjs"), "--socket", socket, "--size-mib", "1"]);
    try {
      await withDeadline(
        blk.line((l) => l.startsWith("listening")),
        20_000,
        "listening RAM blk",
      );
      const p = await probe(socket, "--device-type", "blk");
      assert.equal(p.configStatus, "discovered");
      assert.equal(p.configFields?.capacity, "2048 sectors (1048576 bytes)");
      assert.equal(p.queueNum, 1);
    } finally {
      await blk.stop();
    }
  });
});
