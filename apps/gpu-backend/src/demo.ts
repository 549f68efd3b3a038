#!/usr/bin/env bun
/**
 * The demo (README command #1): starts vhostkit-gpu on a temporary socket, probes it with
 * `vhost-user-device probe` (shmid 1 and its size), runs `vhost-user-device gpu` (a host blob
 * created, mapped into shmid 1, written and read back through the shared memory region, a scene
 * drawn into it and shown as a blob-backed scanout, unmapped), saves the back-end's PNG, prints a
 * summary, points at the committed screenshot of a Linux guest's console on this back-end (the
 * demo runs no guest) and stops the back-end. No root needed.
 *
 *   bun apps/gpu-backend/src/demo.ts [--keep]
 * @module
 */
import { spawn, spawnSync } from "node:child_process";
import { copyFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../../../", import.meta.url));
const bun = typeof (globalThis as { Bun?: unknown }).Bun !== "undefined" ? process.execPath : join(root, "node_modules/.bin/bun");
const deviceMain = join(root, "apps/device/src/main.ts");

/** `vhost-user-device` argv: the gpu command through main.ts once registered, else its standalone entry. */
function deviceCli(command: string): string[] {
  if (command !== "gpu") return [deviceMain, command];
  const help = spawnSync(bun, [deviceMain, "--help"], { encoding: "utf8" });
  return /^\s+gpu\b/m.test(help.stdout) ? [deviceMain, "gpu"] : [join(root, "apps/device/src/gpu/cli.ts")];
}

function run(argv: readonly string[]): string {
  const r = spawnSync(bun, argv, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${argv.slice(0, 2).join(" ")} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

const dir = mkdtempSync(join(tmpdir(), "vhostkit-gpu-demo-"));
const socket = join(dir, "gpu.sock");
const shots = join(dir, "shots");
const lines: Record<string, unknown>[] = [];
const backend = spawn(bun, [join(root, "apps/gpu-backend/bin/vhostkit-gpu.mjs"), "--socket", socket, "--screenshot-dir", shots, "--events"], {
  stdio: ["ignore", "pipe", "inherit"],
});
const exited = new Promise<number | null>((r) => backend.once("exit", r));
const waiters: (() => void)[] = [];
createInterface({ input: backend.stdout }).on("line", (l) => {
  lines.push(JSON.parse(l) as Record<string, unknown>);
  for (const w of waiters.splice(0)) w();
});
const until = async (match: (e: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> => {
  for (;;) {
    const e = lines.find(match);
    if (e !== undefined) return e;
    await Promise.race([new Promise<void>((r) => waiters.push(r)), exited.then(() => Promise.reject(new Error("vhostkit-gpu exited early")))]);
  }
};

try {
  const ready = await until((e) => e["event"] === "listening");
  console.log(`vhostkit-gpu listening on ${socket} (shmid ${ready["shmid"]}, ${ready["shmSize"]} bytes, ${ready["dialect"]} dialect)\n`);

  const probe = JSON.parse(run([...deviceCli("probe"), "--socket", socket, "--json"])) as {
    shmem: { shmid: number; size: string }[];
    protocolFeatureNames: string[];
    queueNum: number;
  };
  console.log("1. vhost-user-device probe");
  console.log(`   queues ${probe.queueNum}; SHMEM negotiated: ${probe.protocolFeatureNames.includes("SHMEM") ? "offered" : "no"}`);
  for (const r of probe.shmem) console.log(`   shared memory region shmid ${r.shmid}: ${BigInt(r.size) >> 20n} MiB (${r.size})`);

  const driverPng = join(dir, "driver.png");
  // biome-ignore lint/suspicious/noExplicitAny: the CLI's --json session summary, read field by field below
  const s = JSON.parse(run([...deviceCli("gpu"), "--socket", socket, "--json", "--screenshot", driverPng])) as Record<string, any>;
  const blob = s["blob"];
  console.log("\n2. vhost-user-device gpu");
  console.log(`   display ${s["display"].width}x${s["display"].height}; 2D resource 1 backed by guest RAM at ${s["resource2d"].backing.guestPhysAddr}`);
  console.log(
    `   blob ${blob.id}: ${blob.size} bytes of host memory (memfd), RESOURCE_MAP_BLOB at ${blob.mapOffset} of shmid 1 -> SHMEM_MAP, map_info ${blob.mapInfo}`,
  );
  for (const m of s["mappings"].whileMapped)
    console.log(`   live mapping: shmid ${m.shmid} ${m.shmOffset}+${m.len} at guest ${m.guestPhysAddr} (${m.writable ? "rw" : "ro"})`);
  console.log(`   wrote ${blob.roundTrip.bytes} bytes through the region and read them back: ${blob.roundTrip.ok ? "identical" : "DIFFERENT"}`);
  console.log(
    `   scene drawn into the blob through the region, SET_SCANOUT_BLOB + RESOURCE_FLUSH; read back: ${blob.sceneReadBack ? "identical" : "DIFFERENT"}`,
  );
  const unmap = await until((e) => e["cmd"] === "RESOURCE_UNMAP_BLOB");
  console.log(`   sha256 of the blob, driver's view:   ${blob.sha256}`);
  console.log(`   sha256 of the blob, back-end's view: ${unmap["blobSha256"]} ${unmap["blobSha256"] === blob.sha256 ? "(same pages)" : "(MISMATCH)"}`);
  console.log(`   RESOURCE_UNMAP_BLOB -> SHMEM_UNMAP; live mappings now: ${s["mappings"].afterUnmap.length}`);
  console.log(`   ${s["commands"]} commands, ${s["errors"]} refused`);

  const shot = await until((e) => e["event"] === "screenshot" && e["resourceId"] === blob.id);
  const png = join(dir, "vhostkit-gpu-demo.png");
  copyFileSync(String(shot["file"]), png);
  console.log(`\n3. screenshot of the blob-backed scanout (rendered by the back-end): ${png}`);
  console.log(`   the driver's own screenshot (read back through the region): ${driverPng}`);
  const linux = join(root, "apps/gpu-backend/docs/linux-guest-console.png");
  console.log(`\n4. the same back-end under a real Linux guest's virtio_gpu driver (QEMU 11.1, not run by this demo):`);
  console.log(`   its text console as the back-end rendered it: ${linux}`);
  console.log("   (tools/interop/test/linux-11-gpu-scanout.test.ts makes it; linux-11-gpu-blob.test.ts maps a host blob from the guest)");
  if (unmap["blobSha256"] !== blob.sha256 || !blob.roundTrip.ok) process.exitCode = 1;
} catch (err) {
  console.error(`demo failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
} finally {
  backend.kill("SIGTERM");
  await exited;
  rmSync(shots, { recursive: true, force: true });
  console.log("\nvhostkit-gpu stopped.");
  if (process.exitCode === 1 && !process.argv.includes("--keep")) rmSync(dir, { recursive: true, force: true });
}
