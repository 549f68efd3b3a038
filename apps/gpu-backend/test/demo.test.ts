/**
 * The demo (README command #1) end to end: it must exit 0, show shmid 1 and its size, the round
 * trip through the region, the same blob hash on both sides, leave a PNG of the scene, and point at
 * the committed screenshot of a Linux guest's console.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { decode } from "fast-png";
import { bgrxToRgba, drawScene } from "../../device/src/gpu/scene.js";

const root = fileURLToPath(new URL("../../../", import.meta.url));

test("bun apps/gpu-backend/src/demo.ts: probe, blob round trip through shmid 1, same pages on both sides, PNG of the scene", { timeout: 60_000 }, () => {
  const bun = typeof (globalThis as { Bun?: unknown }).Bun !== "undefined" ? process.execPath : join(root, "node_modules/.bin/bun");
  const r = spawnSync(bun, [join(root, "apps/gpu-backend/src/demo.ts")], { encoding: "utf8", cwd: root, timeout: 60_000 });
  assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /shared memory region shmid 1: 64 MiB \(0x4000000\)/);
  assert.match(r.stdout, /read them back: identical/);
  assert.match(r.stdout, /\(same pages\)/);
  assert.match(r.stdout, /live mappings now: 0/);
  assert.match(r.stdout, /vhostkit-gpu stopped\./);
  const linux = /its text console as the back-end rendered it: (\S+\.png)/.exec(r.stdout)?.[1];
  assert.ok(linux !== undefined && existsSync(linux), `the committed Linux guest screenshot: ${r.stdout}`);
  const shot = decode(readFileSync(linux));
  assert.deepEqual([shot.width, shot.height], [640, 480]);
  const png = /rendered by the back-end\): (\S+\.png)/.exec(r.stdout)?.[1];
  assert.ok(png !== undefined && existsSync(png), r.stdout);
  try {
    const img = decode(readFileSync(png));
    assert.ok(Buffer.from(img.data as Uint8Array).equals(Buffer.from(bgrxToRgba(drawScene(640, 480), 640, 480))));
  } finally {
    rmSync(dirname(png), { recursive: true, force: true });
  }
});
