/**
 * The generic front-end (@vhostkit/frontend) against QEMU 11.1's qemu-storage-daemon — the newest
 * real vhost-user back-end we can run — from the Debian unstable chroot (tools/peers/qsd-11.sh;
 * .ci/run builds the chroot with qemu-utils). Negotiation, real blk I/O that lands in the image
 * file, and the conformance checks.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { BlkDriver, Guest, decodeBlkConfig, runConformance } from "@vhostkit/frontend";
import { startQsd, type QsdHandle } from "@vhostkit/peers/qsd";
import { ProtocolFeature } from "@vhostkit/wire";

const QSD_11 = fileURLToPath(new URL("../../peers/qsd-11.sh", import.meta.url));

let qsd: QsdHandle;
before(async () => {
  const version = spawnSync("sh", [QSD_11, "--version"], { encoding: "utf8" });
  assert.equal(version.status, 0, `QEMU 11.1's qemu-storage-daemon is needed: run tools/peers/build-sid-chroot.sh (as root)\n${version.stderr}`);
  assert.match(version.stdout, /version 11\.1\./);
  qsd = await startQsd({ sizeBytes: 1024 * 1024, command: ["sh", QSD_11] });
});
after(async () => {
  await qsd?.stop();
});

test("QEMU 11.1 qemu-storage-daemon: negotiation, blk write/read/flush/id through the ring into its image, conformance green", { timeout: 60_000 }, async () => {
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
  assert.deepEqual(results.filter((r) => r.status === "fail"), [], JSON.stringify(results, null, 1));
  assert.ok(results.some((r) => r.name === "GET_VRING_BASE stops the ring" && r.status === "pass"));
});
