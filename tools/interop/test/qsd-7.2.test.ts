/**
 * The generic front-end (@vhostkit/frontend) against QEMU 7.2's qemu-storage-daemon (Debian 12,
 * fetched by tools/peers/fetch.sh without root). One qsd (1 MiB raw image) for the file; it serves
 * one client at a time and listens again after each disconnect, so the tests run one after another
 * on fresh connections. Not fetched: startQsd fails at once with the command to run.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { BlkDriver, Guest, runConformance, isFrontendError, decodeBlkConfig } from "@vhostkit/frontend";
import { userfaultfdAvailable } from "@vhostkit/peers/peers";
import { startQsd, type QsdHandle } from "@vhostkit/peers/qsd";
import { ProtocolFeature } from "@vhostkit/wire";

let qsd: QsdHandle;
before(async () => {
  qsd = await startQsd({ sizeBytes: 1024 * 1024 });
});
after(async () => {
  await qsd.stop();
});

describe("against qemu-storage-daemon 7.2", { timeout: 90_000 }, () => {
  test("negotiation reports exactly what qsd advertises", async () => {
    const guest = new Guest();
    try {
      const d = await guest.addDevice({ socketPath: qsd.socketPath });
      assert.equal(d.info.features, 0x175007e46n);
      // PAGEFAULT (bit 8) is offered only where qsd may open a userfaultfd (root, or
      // vm.unprivileged_userfaultfd=1); every other bit does not depend on who runs it.
      assert.equal(d.info.protocolFeatures & ~ProtocolFeature.PAGEFAULT, 0x8e2bn);
      assert.equal(
        (d.info.protocolFeatures & ProtocolFeature.PAGEFAULT) !== 0n,
        userfaultfdAvailable(),
        "PAGEFAULT offered exactly when userfaultfd is available",
      );
      assert.equal(d.info.queueNum, 1);
      assert.equal(d.info.maxMemSlots, 32);
      assert.equal(d.info.config?.byteLength, 60);
      assert.equal(decodeBlkConfig(d.info.config as Uint8Array).capacity, 2048n);
      assert.deepEqual(d.info.shmem, []);
      assert.equal(d.info.dialect.name, "upstream");
      await d.close();
    } finally {
      await guest.close();
    }
  });

  test("the messages go out in the recommended order (docs/protocol.md#negotiation-order)", async () => {
    const guest = new Guest();
    const sent: string[] = [];
    try {
      const d = await guest.addDevice({ socketPath: qsd.socketPath, trace: (e) => e.channel === "frontend" && e.direction === "send" && sent.push(e.name) });
      const blk = await BlkDriver.attach(d);
      await blk.getId();
      await d.close();
    } finally {
      await guest.close();
    }
    const squeezed = sent.filter((n, i) => n !== "GET_CONFIG" || sent[i - 1] !== "GET_CONFIG");
    assert.deepEqual(squeezed, [
      "GET_FEATURES",
      "GET_PROTOCOL_FEATURES",
      "SET_PROTOCOL_FEATURES",
      "GET_QUEUE_NUM",
      "GET_MAX_MEM_SLOTS",
      "SET_BACKEND_REQ_FD",
      "SET_OWNER",
      "GET_CONFIG",
      "SET_FEATURES",
      "ADD_MEM_REG",
      "SET_VRING_NUM",
      "SET_VRING_BASE",
      "SET_VRING_ADDR",
      "SET_VRING_CALL",
      "SET_VRING_KICK",
      "SET_VRING_ENABLE",
      "SET_VRING_ENABLE",
      "GET_VRING_BASE",
      "RESET_OWNER", // qsd 7.2 lacks RESET_DEVICE: the reset QEMU falls back to
    ]);
  });

  test("blk write then read round-trips and the bytes land in the image file", async () => {
    const guest = new Guest();
    try {
      const d = await guest.addDevice({ socketPath: qsd.socketPath });
      const blk = await BlkDriver.attach(d);
      assert.equal(blk.config?.capacity, 2048n);
      const data = new Uint8Array(3 * 512);
      for (let i = 0; i < data.length; i++) data[i] = (i * 7 + 3) & 0xff;
      await blk.write(10n, data);
      await blk.flush();
      assert.deepEqual(await blk.read(10n, 3), data);
      assert.equal(await blk.getId(), "vhost_user_blk");
      const bases = await d.stop();
      assert.equal(bases.get(0), 4, "GET_VRING_BASE returns the number of chains made available");
      await d.close();
      const image = await readFile(join(qsd.dir, "disk.raw"));
      assert.deepEqual(new Uint8Array(image.subarray(10 * 512, 13 * 512)), data);
    } finally {
      await guest.close();
    }
  });

  test("reading past the end reports the device's IOERR and the device stays usable", async () => {
    const guest = new Guest();
    try {
      const d = await guest.addDevice({ socketPath: qsd.socketPath });
      const blk = await BlkDriver.attach(d);
      await assert.rejects(blk.read(2048n, 1), (err: unknown) => isFrontendError(err) && err.code === "IO_ERROR" && /IOERR/.test(err.message));
      assert.equal((await blk.read(2047n, 1)).byteLength, 512);
      assert.equal(d.failed, undefined);
      await d.close();
    } finally {
      await guest.close();
    }
  });

  test("the conformance checks are green", async () => {
    for (const deviceType of ["generic", "blk"] as const) {
      const results = await runConformance({ socketPath: qsd.socketPath, deviceType });
      const failed = results.filter((r) => r.status === "fail");
      assert.deepEqual(failed, [], JSON.stringify(results, null, 1));
      assert.ok(results.some((r) => r.name === "GET_VRING_BASE stops the ring" && r.status === "pass"));
    }
  });
});
