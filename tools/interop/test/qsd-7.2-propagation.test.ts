/**
 * Eager propagation (docs/shmem.md#eager-propagation) with a real peer: QEMU 7.2's
 * qemu-storage-daemon reads a sector straight into another device's shared-memory mapping. The
 * mapping comes from a back-end on @vhostkit/backend in a second process (fixtures/shmem-blk-device.mjs,
 * which maps a 64 KiB blob at offset 0x10000 of shmid 1 once it runs); the front-end adds it to
 * qsd's memory table (ADD_MEM_REG) after its reply to the map, and removes it (REM_MEM_REG) when
 * the mapping's device closes. Not fetched: startQsd fails at once with the command to run.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { BlkDriver, Guest, RawDriver } from "@vhostkit/frontend";
import { startQsd, type QsdHandle } from "@vhostkit/peers/qsd";
import { LineProcess, withDeadline } from "./helpers/processes.js";

const DEVICE = fileURLToPath(new URL("./fixtures/shmem-blk-device.mjs", import.meta.url));

test("eager propagation: qsd 7.2 reads a sector straight into the other device's SHMEM mapping", { timeout: 90_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), "vhostkit-propagation-"));
  const image = join(dir, "disk.img");
  writeFileSync(image, Buffer.alloc(1 << 20));
  const socket = join(dir, "shmem.sock");
  const dev = new LineProcess(process.execPath, [DEVICE, "--socket", socket, "--image", image]);
  const step = (name: string): Promise<string> => dev.line((l) => l.includes(`"step":"${name}"`));
  const guest = new Guest();
  let qsd: QsdHandle | undefined;
  try {
    await withDeadline(step("listening"), 20_000, "listening shmem device");
    qsd = await startQsd({ sizeBytes: 1024 * 1024 });
    const blkDev = await guest.addDevice({ socketPath: qsd.socketPath });
    const blk = await BlkDriver.attach(blkDev);
    const pattern = new Uint8Array(512).map((_, i) => (i * 5 + 1) & 0xff);
    await blk.write(7n, pattern);

    const shm = await guest.addDevice({ socketPath: socket });
    await RawDriver.attach(shm); // the ring runs: the device maps its blob
    const failed = dev.line((l) => /"step":"(map-failed|dropped|rejected)"/.test(l)).then((l) => assert.fail(`shmem device: ${l}`));
    await withDeadline(Promise.race([step("mapped"), failed]), 20_000, "SHMEM_MAP from the shmem device");
    // The mapping goes into qsd's table with ADD_MEM_REG after the reply to the shmem back-end.
    await withDeadline(blkDev.propagationSettled(), 20_000, "ADD_MEM_REG of the mapping to qsd");
    await withDeadline(shm.propagationSettled(), 20_000, "the shmem device's own table update");
    const window = (shm.info.shmem.find((r) => r.shmid === 1)?.guestPhysAddr as bigint) + 0x10000n;

    // A virtio-blk READ whose data buffer lies in the shmem device's window, not in RAM.
    const hdr = guest.allocator.alloc(16);
    const status = guest.allocator.alloc(1);
    const h = new Uint8Array(16);
    new DataView(h.buffer).setBigUint64(8, 7n, true);
    await guest.space.write(hdr, h);
    const used = await withDeadline(
      blk.queue.submit(
        [{ addr: hdr, len: 16 }],
        [
          { addr: window, len: 512 },
          { addr: status, len: 1 },
        ],
      ),
      20_000,
      "qsd's READ into the mapping",
    );
    assert.equal(used, 513);
    const st = new Uint8Array(1);
    await guest.space.read(status, st);
    assert.equal(st[0], 0, "virtio-blk status OK");
    const got = new Uint8Array(512);
    await guest.space.read(window as typeof hdr, got);
    assert.deepEqual(got, pattern);
    await shm.close();
    await withDeadline(blkDev.propagationSettled(), 20_000, "REM_MEM_REG of the mapping to qsd");
    assert.equal(blkDev.failed, undefined);
    assert.deepEqual(await blk.read(7n, 1), pattern, "qsd still works after REM_MEM_REG");
  } finally {
    await guest.close();
    await qsd?.stop();
    await dev.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
