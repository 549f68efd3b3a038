import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { test } from "node:test";

test("a read-only SHMEM mapping really refuses writes: the writer dies with SIGSEGV", () => {
  const fixture = fileURLToPath(new URL("./fixtures/write-read-only.mjs", import.meta.url));
  const r = spawnSync(process.execPath, [fixture], { encoding: "utf8", timeout: 20_000 });
  assert.equal(r.stdout.includes("ready 0"), true, `child did not reach the write: status ${r.status} stderr ${r.stderr}`);
  assert.equal(r.stdout.includes("survived"), false);
  assert.equal(r.signal, "SIGSEGV", `status ${r.status} signal ${r.signal}`);
});
