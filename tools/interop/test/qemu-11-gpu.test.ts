/**
 * QEMU 11.1 against the GPU sample itself (apps/gpu-backend's vhostkit-gpu) presented as
 * virtio-gpu (`vhost-user-test-device-pci,virtio-id=16,num_vqs=2,config_size=20`): QEMU reads the
 * sample's config space and GET_SHMEM_CONFIG and sizes shmid 1 and BAR 4 from it (--shm-size 32M). The guest
 * never runs (`-S`), so no driver sets DRIVER_OK, so the rings never start: the sample must not map anything (QEMU
 * 11.1.3 crashes on a map before DRIVER_OK) and QEMU must quit cleanly.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { peerCommand } from "@vhostkit/peers/peers";
import { LineProcess, Qmp, withDeadline } from "./helpers/processes.js";
import { vhostUserGpuMachine } from "./helpers/qemu.js";

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));
const GPU_APP = here("../../../apps/gpu-backend/");

test("QEMU 11.1 + vhostkit-gpu as virtio-gpu: GET_SHMEM_CONFIG sizes shmid 1 and BAR 4 (--shm-size 32M), no map without DRIVER_OK, clean quit", {
  timeout: 100_000,
}, async () => {
  const [program, ...prefix] = peerCommand("sid", "qemu-system-x86_64"); // not fetched: fails here, before anything starts
  if (typeof (globalThis as { Bun?: unknown }).Bun === "undefined") {
    // Node runs the sample's dist/ build (incremental; a no-op when up to date).
    const b = spawnSync(here("../../../node_modules/.bin/tsc"), ["-b", GPU_APP], { encoding: "utf8" });
    assert.equal(b.status, 0, `${b.stdout}${b.stderr}`);
  }
  const dir = mkdtempSync(join(tmpdir(), "vhostkit-qemu11-gpu-"));
  const socket = join(dir, "gpu.sock");
  const gpu = new LineProcess(process.execPath, [
    join(GPU_APP, "bin/vhostkit-gpu.mjs"),
    "--socket",
    socket,
    "--shm-size",
    "32M",
    "--events",
    "--once",
    "--sealed-memory",
  ]);
  let qemu: LineProcess | undefined;
  try {
    await withDeadline(gpu.line('"event":"listening"'), 20_000, "listening vhostkit-gpu");
    qemu = new LineProcess(
      program as string,
      [...prefix, ...vhostUserGpuMachine(socket, 64, ",id=gpu0"), "-display", "none", "-nodefaults", "-no-reboot", "-serial", "none", "-S", "-qmp", "stdio"],
      { stdin: true },
    );
    const qmp = await withDeadline(Qmp.overStdio(qemu), 30_000, "QMP greeting");
    // -S: the guest never runs, so no driver ever sets DRIVER_OK. The BAR is not placed yet; the
    // regions are QOM children of the device.
    const backend = "/machine/peripheral/gpu0/virtio-backend";
    const size = async (path: string) => BigInt((await qmp.execute("qom-get", { path, property: "size" })) as number | string);
    assert.equal(await size(`${backend}/virtio-shmem-1[0]`), 32n << 20n, "shmid 1 with the size GET_SHMEM_CONFIG reported");
    assert.equal(await size("/machine/peripheral/gpu0/vhost-device-pci-shmembar[0]"), 32n << 20n, "BAR 4 holds exactly the region (a power of two)");
    const children = ((await qmp.execute("qom-list", { path: backend })) as { name: string }[]).map((c) => c.name);
    assert.ok(!children.some((n) => /^virtio-shmem-1-/.test(n)), `nothing mapped: ${children.join(", ")}`);
    assert.ok(
      ((await qmp.execute("qom-list", { path: "/machine/peripheral/gpu0" })) as { name: string }[]).some((c) =>
        c.name.startsWith("virtio-pci-device-virtio-gpu"),
      ),
      "QEMU presents the device as virtio-gpu",
    );
    await qmp.execute("quit");
    assert.equal(await withDeadline(qemu.exited, 20_000, "QEMU exit"), 0, `QEMU exit status\n${qemu.stderr}`);
    await withDeadline(gpu.line('"event":"reset"'), 20_000, "reset of vhostkit-gpu");
    assert.ok(!gpu.lines.some((l) => l.includes('"event":"start"')), "the sample never ran, so it never mapped");
    assert.equal(await withDeadline(gpu.exited, 20_000, "vhostkit-gpu exit"), 0, "--once: vhostkit-gpu exits after QEMU left");
  } finally {
    await qemu?.stop();
    await gpu.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
