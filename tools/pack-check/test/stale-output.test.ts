/**
 * `tsc -b` never deletes the output of a source file that was removed or renamed; pack-check refuses
 * a package whose tarball would ship such a stale module.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../../..", import.meta.url));
const bun = join(root, "node_modules", ".bin", "bun");
const pkg = join(root, "packages", "wire");

function packCheck(): { status: number | null; out: string } {
  const r = spawnSync(bun, [join(root, "tools", "pack-check", "src", "main.ts"), "."], { cwd: pkg, encoding: "utf8", timeout: 300_000 });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

test("a dist module without its source is reported and fails the check; without it the package is clean", () => {
  const stem = `stale-${process.pid}`;
  const files = [`${stem}.js`, `${stem}.d.ts`].map((f) => join(pkg, "dist", f));
  try {
    for (const f of files) writeFileSync(f, "export {};\n");
    const stale = packCheck();
    assert.equal(stale.status, 1, stale.out);
    assert.match(stale.out, new RegExp(`dist/${stem}\\.js has no source src/${stem}\\.ts`));
  } finally {
    for (const f of files) rmSync(f, { force: true });
  }
  const clean = packCheck();
  assert.equal(clean.status, 0, clean.out);
  assert.doesNotMatch(clean.out, /stale build output/);
});
