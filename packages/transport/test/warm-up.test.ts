/**
 * The libc warm-up `Reactor.shared` runs at a process's first connection: in a fresh process it
 * leaves no fd open and no mapping behind, and a second call does nothing.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { spawnFixture } from "./helpers/lifetime.js";

const FIXTURE = fileURLToPath(new URL("./fixtures/warm-up.mjs", import.meta.url));

test("warmUpSys in a fresh process closes every scratch fd and unmaps its scratch memory", async (t) => {
  const child = spawnFixture(t, FIXTURE, []);
  const exit = await child.exited;
  assert.equal(exit.code, 0, child.output());
  const report = JSON.parse(child.output().trim().split("\n").at(-1) ?? "{}") as Record<string, unknown>;
  assert.deepEqual(report, { before: report["before"], afterFirst: report["before"], afterSecond: report["before"], mapped: false });
  assert.equal(typeof report["before"], "number");
});
