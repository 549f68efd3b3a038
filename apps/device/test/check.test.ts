/**
 * `vhost-user-device check` against the RAM blk example and vhostkit's own shared-memory back-end,
 * each in its own process: the status byte round trips (docs/protocol.md#device-status), RESET_DEVICE
 * (docs/protocol.md#reset), the shared memory regions' back-end channel, and the opt-in hostile
 * section (docs/protocol.md#what-the-back-end-refuses) — every malformed request refused or the
 * connection closed, and a new connection served after each. `--json` follows the documented schema.
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
const OWN = fileURLToPath(new URL("./fixtures/own-backend.mjs", import.meta.url));
const cleanups: (() => Promise<unknown>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function start(args: (socket: string) => string[], ready: (l: string) => boolean): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "vhostkit-check-"));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const socket = join(dir, "dev.sock");
  const proc = new LineProcess(process.execPath, args(socket));
  cleanups.push(() => proc.stop());
  await proc.line(ready);
  return socket;
}

interface Report {
  readonly ok: boolean;
  readonly checks: readonly { readonly name: string; readonly status: "pass" | "fail" | "skip"; readonly reason: string }[];
}

test("RAM blk example: --hostile --json is green, with status, RESET_DEVICE and six hostile cases", async () => {
  const socket = await start(
    (s) => [RAM_BLK, "--socket", s, "--size-mib", "1"],
    (l) => l.startsWith("listening"),
  );
  const r = await cli("check", "--socket", socket, "--device-type", "blk", "--hostile", "--json");
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const report = JSON.parse(r.stdout) as Report;
  assert.deepEqual(Object.keys(report).sort(), ["checks", "ok"]);
  assert.equal(report.ok, true);
  for (const c of report.checks) {
    assert.deepEqual(Object.keys(c).sort(), ["name", "reason", "status"]);
    assert.ok(["pass", "skip"].includes(c.status), `${c.name}: ${c.status} ${c.reason}`);
  }
  const by = new Map(report.checks.map((c) => [c.name, c]));
  assert.match(by.get("status before the rings")?.reason ?? "", /SET_STATUS 0x3 read back/);
  assert.match(by.get("status with the rings running")?.reason ?? "", /SET_STATUS 0xf read back/);
  assert.match(by.get("RESET_DEVICE")?.reason ?? "", /status byte back at 0/);
  const hostile = report.checks.filter((c) => c.name.startsWith("hostile: "));
  assert.equal(hostile.length, 6);
  assert.ok(
    hostile.every((c) => c.status === "pass" && /a new connection is served$/.test(c.reason)),
    JSON.stringify(hostile, null, 1),
  );
});

test("shared memory back-end: its regions come with a back-end channel that carries fds", async () => {
  const socket = await start(
    (s) => [OWN, "--socket", s, "--device", "shmem"],
    (l) => l.includes('"listening"'),
  );
  const r = await cli("check", "--socket", socket, "--json");
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const channel = (JSON.parse(r.stdout) as Report).checks.find((c) => c.name === "shmem back-end channel");
  assert.deepEqual([channel?.status, channel?.reason], ["pass", "2 region(s) with a back-end channel that carries fds"]);
});
