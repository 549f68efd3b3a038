/**
 * `vhost-user-device state save` / `state load` against the RAM blk example device in two
 * processes: data written to the first with `blk --write` is saved into a file, loaded into the
 * second, and read back from it with `blk --read`; a state the device refuses is exit code 1 with
 * CHECK_DEVICE_STATE's failure named on stderr.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
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

/** A fresh temporary directory, removed after the tests. */
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "vhostkit-state-"));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** The RAM blk device (1 MiB) in its own process; resolves with its socket once it listens. */
async function device(dir: string, name: string): Promise<string> {
  const socket = join(dir, `${name}.sock`);
  const proc = new LineProcess(process.execPath, [RAM_BLK, "--socket", socket, "--size-mib", "1"]);
  cleanups.push(() => proc.stop());
  await proc.line((l) => l.startsWith("listening"));
  return socket;
}

test("state save from one RAM blk process, state load into a fresh one: the data written to the first reads back from the second", async () => {
  const dir = await tempDir();
  const [source, target] = [await device(dir, "source"), await device(dir, "target")];
  const data = Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 11 + 5) & 0xff));
  await writeFile(join(dir, "in.bin"), data);
  const w = await cli("blk", "--socket", source, "--write", "16", "--in", join(dir, "in.bin"));
  assert.equal(w.code, 0, w.stderr);

  const s = await cli("state", "save", "--socket", source, "--out", join(dir, "state.bin"));
  assert.equal(s.code, 0, s.stderr);
  assert.equal(s.stdout, `saved ${16 + (1 << 20)} bytes of device state to ${join(dir, "state.bin")}\n`);
  assert.equal((await stat(join(dir, "state.bin"))).size, 16 + (1 << 20));

  const l = await cli("state", "load", "--socket", target, "--in", join(dir, "state.bin"), "--json");
  assert.equal(l.code, 0, l.stderr);
  assert.deepEqual(JSON.parse(l.stdout), { loaded: 16 + (1 << 20), in: join(dir, "state.bin") });

  const r = await cli("blk", "--socket", target, "--read", "16:8", "--out", join(dir, "out.bin"));
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(await readFile(join(dir, "out.bin")), data);
});

test("state load of a file the device refuses: exit 1, CHECK_DEVICE_STATE's failure on stderr; a missing --out is a usage error", async () => {
  const dir = await tempDir();
  const target = await device(dir, "target");
  await writeFile(join(dir, "garbage.bin"), Buffer.from("not a ram-blk state at all"));
  const l = await cli("state", "load", "--socket", target, "--in", join(dir, "garbage.bin"));
  assert.equal(l.code, 1);
  assert.match(l.stderr, /^vhost-user-device: check_device_state: back-end answered 0x1: the state transfer failed\n$/);
  const u = await cli("state", "save", "--socket", target);
  assert.equal(u.code, 2);
  assert.match(u.stderr, /--out/);
});
