/**
 * The generic front-end (@vhostkit/frontend) against QEMU 11.1's qemu-storage-daemon — the newest
 * real vhost-user back-end we can run — from Debian unstable (fetched without
 * root by tools/peers/fetch.sh). Negotiation, real blk I/O that lands in the image
 * file, and the conformance checks, through the library and through the `vhost-user-device` CLI.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { BlkDriver, Guest, decodeBlkConfig, runConformance } from "@vhostkit/frontend";
import { qsdVersion, startQsd, type QsdHandle } from "@vhostkit/peers/qsd";
import { assertVersionAtLeast } from "@vhostkit/peers/version";
import { ProtocolFeature } from "@vhostkit/wire";

let qsd: QsdHandle;
before(async () => {
  assertVersionAtLeast(await qsdVersion({ peer: "sid" }), "version", "11.1"); // not fetched: fails here, at once
  qsd = await startQsd({ sizeBytes: 1024 * 1024, peer: "sid" });
});
after(async () => {
  await qsd?.stop();
});

test("QEMU 11.1 qemu-storage-daemon: negotiation, blk write/read/flush/id through the ring into its image, conformance green", {
  timeout: 60_000,
}, async () => {
  const guest = new Guest();
  try {
    const d = await guest.addDevice({ socketPath: qsd.socketPath });
    for (const f of [ProtocolFeature.REPLY_ACK, ProtocolFeature.CONFIGURE_MEM_SLOTS, ProtocolFeature.BACKEND_REQ]) {
      assert.equal(d.info.ackedProtocolFeatures & f, f, `0x${f.toString(16)} negotiated`);
    }
    assert.ok((d.info.maxMemSlots ?? 0) >= 32, `max mem slots ${d.info.maxMemSlots}`);
    assert.equal(decodeBlkConfig(d.info.config as Uint8Array).capacity, 2048n);
    assert.deepEqual(d.info.shmem, [], "a blk export declares no shared memory regions");
    const blk = await BlkDriver.attach(d);
    const data = Uint8Array.from({ length: 4096 }, (_, i) => (i * 7 + 3) & 0xff);
    await blk.write(16n, data);
    await blk.flush();
    assert.deepEqual(await blk.read(16n, 8), data);
    assert.ok((await blk.getId()).length > 0);
    await d.close();
    const image = await readFile(join(qsd.dir, "disk.raw"));
    assert.deepEqual(new Uint8Array(image.subarray(16 * 512, 16 * 512 + 4096)), data, "the bytes are in qsd's image file");
  } finally {
    await guest.close();
  }
  const results = await runConformance({ socketPath: qsd.socketPath, deviceType: "blk" });
  assert.deepEqual(
    results.filter((r) => r.status === "fail"),
    [],
    JSON.stringify(results, null, 1),
  );
  assert.ok(results.some((r) => r.name === "GET_VRING_BASE stops the ring" && r.status === "pass"));
});

test("vhost-user-device against QEMU 11.1 qemu-storage-daemon: probe --json, blk --write/--read, check", { timeout: 60_000 }, async () => {
  // The CLI is a Bun program: under Node it runs with the repository's own Bun.
  const bun = "bun" in process.versions ? process.execPath : fileURLToPath(new URL("../../../node_modules/.bin/bun", import.meta.url));
  const main = fileURLToPath(new URL("../../../apps/device/src/main.ts", import.meta.url));
  const cli = (...args: string[]) => spawnSync(bun, [main, ...args], { encoding: "utf8", timeout: 30_000 });
  const probe = cli("probe", "--socket", qsd.socketPath, "--device-type", "blk", "--json");
  assert.equal(probe.status, 0, probe.stderr);
  const o = JSON.parse(probe.stdout) as { queueNum: number; protocolFeatureNames: string[]; shmem: unknown[]; config: string };
  assert.ok(o.queueNum >= 1);
  assert.ok(o.protocolFeatureNames.includes("REPLY_ACK") && o.protocolFeatureNames.includes("CONFIGURE_MEM_SLOTS"), o.protocolFeatureNames.join(" "));
  assert.deepEqual(o.shmem, []);
  const dir = qsd.dir;
  const input = join(dir, "in.bin");
  const output = join(dir, "out.bin");
  const data = Buffer.from(Array.from({ length: 1024 }, (_, i) => (i * 13 + 1) & 0xff));
  await writeFile(input, data);
  const w = cli("blk", "--socket", qsd.socketPath, "--write", "100", "--in", input);
  assert.equal(w.status, 0, w.stderr);
  const r = cli("blk", "--socket", qsd.socketPath, "--read", "100:2", "--out", output);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(await readFile(output), data);
  const check = cli("check", "--socket", qsd.socketPath, "--device-type", "blk", "--json");
  assert.equal(check.status, 0, check.stdout + check.stderr);
  assert.equal((JSON.parse(check.stdout) as { ok: boolean }).ok, true);
});
