/**
 * `vhost-user-device blk --workload`: against the RAM blk example it writes, reads back and
 * verifies, prints a progress line per second and a summary whose avail index matches the
 * back-end's; against a device that drops writes (`--discard`) it reports the mismatches and exits
 * 1; with `--reconnect` it survives the device being killed and started again mid-run.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { LineProcess } from "./helpers/line-process.js";
import { cli } from "./helpers/run-cli.js";

const RAM_BLK = fileURLToPath(new URL("../../../packages/backend/examples/ram-blk.mjs", import.meta.url));
// The CLI as run-cli.ts starts it (a Bun program; under the Node leg the repository's own Bun).
const APP = import.meta.url.slice(0, import.meta.url.lastIndexOf("/test/") + 1);
const MAIN = fileURLToPath(new URL("src/main.ts", APP));
const BUN = "bun" in process.versions ? process.execPath : fileURLToPath(new URL("../../node_modules/.bin/bun", APP));
const cleanups: (() => Promise<unknown>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

/** A temp dir removed after the tests. */
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "vhostkit-workload-"));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** The RAM blk device on `socket` (a 2 MiB disk in `dir`), resolved once it listens. */
async function device(dir: string, ...args: string[]): Promise<LineProcess> {
  const proc = new LineProcess(process.execPath, [RAM_BLK, "--socket", join(dir, "blk.sock"), "--size-mib", "2", "--file", join(dir, "disk.img"), ...args]);
  cleanups.push(() => proc.stop());
  await proc.line((l) => l.startsWith("listening"));
  return proc;
}

/** The JSON lines of a `--json` run. */
function records(stdout: string): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  let buf = "";
  for (const line of stdout.split("\n")) {
    buf += line;
    try {
      out.push(JSON.parse(buf) as Record<string, unknown>);
      buf = "";
    } catch {
      buf += "\n";
    }
  }
  return out;
}

test("--workload verifies what it wrote, a progress line per second, and the back-end consumed exactly what the driver made available", {
  timeout: 60_000,
}, async () => {
  const dir = await tempDir();
  await device(dir);
  const r = await cli("blk", "--socket", join(dir, "blk.sock"), "--workload", "2", "--qd", "8", "--write-ratio", "0.3", "--json");
  assert.equal(r.code, 0, r.stderr + r.stdout);
  const lines = records(r.stdout);
  const progress = lines.filter((l) => "iops" in l && !("summary" in l));
  assert.ok(progress.length >= 1, r.stdout);
  const { summary } = lines.find((l) => "summary" in l) as { summary: Record<string, number> };
  assert.equal(summary["mismatches"], 0);
  assert.equal(summary["errors"], 0);
  assert.ok((summary["verifiedReads"] ?? 0) > 0 && (summary["verifiedBlocks"] ?? 0) > 0, JSON.stringify(summary));
  assert.equal(summary["deviceBase"], summary["driverBase"]);
});

test("--workload against a device that drops writes reports mismatches and exits 1", { timeout: 60_000 }, async () => {
  const dir = await tempDir();
  await device(dir, "--discard");
  const r = await cli("blk", "--socket", join(dir, "blk.sock"), "--workload", "1", "--qd", "4");
  assert.equal(r.code, 1, r.stdout);
  assert.match(r.stderr, /mismatched/);
  assert.match(r.stdout, /summary: /);
});

test("--workload --reconnect survives the device killed with SIGKILL and started again", { timeout: 60_000 }, async () => {
  const dir = await tempDir();
  let dev = await device(dir, "--events");
  const run = new LineProcess(BUN, [MAIN, "blk", "--socket", join(dir, "blk.sock"), "--workload", "3", "--qd", "16", "--reconnect"]);
  cleanups.push(() => run.stop());
  await run.line((l) => / IOPS /.test(l)); // load for a second, then the kill
  dev.child.kill("SIGKILL");
  await dev.exited;
  dev = await device(dir, "--events");
  const exit = await run.exited;
  const stdout = run.lines.join("\n");
  assert.equal(exit.code, 0, run.stderr + stdout);
  assert.match(stdout, /reconnected #1 after \d+ ms/);
  assert.match(stdout, /reconnects: 1; vring base: driver (\d+), back-end \1/);
  assert.ok(
    dev.lines.some((l) => l.startsWith("event inflight queue 0")),
    dev.lines.join("\n"),
  );
});

test("--reconnect without --workload is a usage error", async () => {
  const r = await cli("blk", "--socket", "/nonexistent.sock", "--id", "--reconnect");
  assert.equal(r.code, 2);
});
