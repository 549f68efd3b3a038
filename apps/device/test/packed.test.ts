/**
 * `--packed` / `--no-packed` (docs/virtqueue.md#packed-rings) against vhostkit's own back-ends in
 * their own processes: the rng device of the framework (fixtures/own-backend.mjs) and the RAM blk
 * example, which offer packed rings unless started with `--no-packed`. `--packed` succeeds only on
 * packed rings (it fails when the back-end does not offer them), so a run that passes proves the
 * layout; `check` reports the packed ring base.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { LineProcess } from "./helpers/line-process.js";
import { cli } from "./helpers/run-cli.js";

const OWN_BACKEND = fileURLToPath(new URL("./fixtures/own-backend.mjs", import.meta.url));
const RAM_BLK = fileURLToPath(new URL("../../../packages/backend/examples/ram-blk.mjs", import.meta.url));
const cleanups: (() => Promise<unknown>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

/** A fresh temp dir, removed after the tests. */
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "vhostkit-packed-"));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** `script args` in its own process, stopped after the tests; resolves with `socket` once it prints a line with "listening". */
async function backend(script: string, args: (socket: string) => string[]): Promise<string> {
  const socket = join(await tempDir(), "dev.sock");
  const proc = new LineProcess(process.execPath, [script, ...args(socket)]);
  cleanups.push(() => proc.stop());
  await proc.line((l) => l.includes("listening"));
  return socket;
}

/** The `check --json` results by name. */
function checks(stdout: string): Map<string, { status: string; reason: string }> {
  return new Map((JSON.parse(stdout) as { checks: { name: string; status: string; reason: string }[] }).checks.map((c) => [c.name, c]));
}

test("rng on the framework's packed rings: --packed reads random bytes; check passes with the packed ring base, and with --no-packed the split one", async () => {
  const socket = await backend(OWN_BACKEND, (s) => ["--socket", s, "--device", "rng"]);
  const r = await cli("rng", "--socket", socket, "--bytes", "3000", "--packed");
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^[0-9a-f]{6000}\n$/);
  for (const [flag, reason] of [
    ["--packed", /returned packed ring base 0x[0-9a-f]+/],
    ["--no-packed", /returned next avail index 0x[0-9a-f]+/],
  ] as const) {
    const c = await cli("check", "--socket", socket, "--device-type", "rng", flag, "--json");
    assert.equal(c.code, 0, c.stdout + c.stderr);
    const results = checks(c.stdout);
    assert.equal(results.get("ring runs")?.status, "pass", c.stdout);
    assert.match(results.get("GET_VRING_BASE stops the ring")?.reason ?? "", reason, c.stdout);
  }
});

test("blk: data written on a packed ring reads back on a split one; --packed fails with a negotiation error against a back-end started with --no-packed", async () => {
  const dir = await tempDir();
  const data = Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 13 + 5) & 0xff));
  await writeFile(join(dir, "in.bin"), data);
  const socket = await backend(RAM_BLK, (s) => ["--socket", s, "--size-mib", "1"]);
  const w = await cli("blk", "--socket", socket, "--packed", "--write", "16", "--in", join(dir, "in.bin"));
  assert.equal(w.code, 0, w.stderr);
  const r = await cli("blk", "--socket", socket, "--no-packed", "--read", "16:8", "--out", join(dir, "out.bin"));
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(await readFile(join(dir, "out.bin")), data);
  const splitOnly = await backend(RAM_BLK, (s) => ["--socket", s, "--size-mib", "1", "--no-packed"]);
  const refused = await cli("blk", "--socket", splitOnly, "--packed", "--id");
  assert.equal(refused.code, 1, refused.stdout + refused.stderr);
  assert.match(refused.stderr, /packed ring required, but the back-end does not offer VIRTIO_F_RING_PACKED/);
  const id = await cli("blk", "--socket", splitOnly, "--id", "--json");
  assert.equal(id.code, 0, id.stderr);
  assert.deepEqual(JSON.parse(id.stdout), { op: "id", id: "vhostkit-ram-blk" });
});
