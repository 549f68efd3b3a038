/**
 * `vhost-user-device blk` against the RAM blk example device (packages/backend/examples/ram-blk.mjs)
 * in its own process: data round-trips, and with `--discard` the device behaves like qemu's
 * null-co (reads report OK without touching the buffer, writes are dropped), as the back-end
 * benchmark compares it.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { LineProcess } from "./helpers/line-process.js";
import { cli } from "./helpers/run-cli.js";

const RAM_BLK = fileURLToPath(new URL("../../../packages/backend/examples/ram-blk.mjs", import.meta.url));
const cleanups: (() => Promise<unknown>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

/** The RAM blk device in its own process, stopped after the tests; resolves with its socket once it listens. */
async function device(...args: string[]): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "vhostkit-ramblk-"));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const socket = join(dir, "blk.sock");
  const proc = new LineProcess(process.execPath, [RAM_BLK, "--socket", socket, "--size-mib", "1", ...args]);
  cleanups.push(() => proc.stop());
  await proc.line((l) => l.startsWith("listening"));
  return socket;
}

for (const discard of [false, true]) {
  test(discard ? "--discard: a read reports OK and leaves the buffer alone; the write was dropped" : "data written is read back", async () => {
    const socket = await device(...(discard ? ["--discard"] : []));
    const dir = await mkdtemp(join(tmpdir(), "vhostkit-ramblk-io-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const data = Buffer.from(Array.from({ length: 1024 }, (_, i) => (i * 7 + 3) & 0xff));
    await writeFile(join(dir, "in.bin"), data);
    const w = await cli("blk", "--socket", socket, "--write", "8", "--in", join(dir, "in.bin"));
    assert.equal(w.code, 0, w.stderr);
    const r = await cli("blk", "--socket", socket, "--read", "8:2", "--out", join(dir, "out.bin"));
    assert.equal(r.code, 0, r.stderr);
    const out = await readFile(join(dir, "out.bin"));
    // The driver fills device-writable buffers with 0xff before it submits them.
    assert.deepEqual(out, discard ? Buffer.alloc(1024, 0xff) : data);
  });
}
