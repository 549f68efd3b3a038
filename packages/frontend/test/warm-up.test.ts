/**
 * The front-end warm-up (docs/performance.md#first-shmem-request): a process's first Guest.addDevice,
 * before it connects, sends SHMEM_MAP / SHMEM_UNMAP through a scratch back-end request handler and
 * the device's port into a scratch guest's shared memory (each answered with status 0), and the
 * ADD_MEM_REG / REM_MEM_REG steps count only when the memory-table mirror of a second scratch
 * back-end propagated every one of those mappings into its table and out again; in a fresh process
 * it leaves no fd open and no mapping behind (scratch guest RAM included), runs once, and
 * VHOSTKIT_WARM_UP=0 turns it off.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

const FIXTURE = fileURLToPath(new URL("./fixtures/warm-up.mjs", import.meta.url));

/** Runs the fixture in a fresh process and returns its report. */
async function report(env: Record<string, string>): Promise<Record<string, unknown>> {
  const child = spawn(process.execPath, [FIXTURE], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } });
  let out = "";
  child.stdout.on("data", (b: Buffer) => (out += b.toString()));
  child.stderr.on("data", (b: Buffer) => (out += b.toString()));
  const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
  assert.equal(code, 0, out);
  return JSON.parse(out.trim().split("\n").at(-1) ?? "{}") as Record<string, unknown>;
}

test("the first addDevice warms up every shared-memory path once and leaves no fd or mapping behind", async () => {
  const r = await report({ VHOSTKIT_WARM_UP: "1" });
  assert.deepEqual(r["steps"], ["BACKEND_SHMEM_MAP", "BACKEND_SHMEM_UNMAP", "ADD_MEM_REG", "REM_MEM_REG"]);
  assert.equal(r["stepsAfterSecond"], 4);
  // The device itself still fails as it would without the warm-up.
  assert.equal(r["first"], "DISCONNECTED");
  assert.equal(r["second"], "DISCONNECTED");
  assert.equal(r["after"], r["before"]);
  assert.equal(r["mapped"], false);
});

test("VHOSTKIT_WARM_UP=0 skips the warm-up", async () => {
  const r = await report({ VHOSTKIT_WARM_UP: "0" });
  assert.deepEqual(r["steps"], []);
  assert.equal(r["first"], "DISCONNECTED");
  assert.equal(r["after"], r["before"]);
});
