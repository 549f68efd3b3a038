/**
 * Dirty page logging in a long-running back-end (docs/protocol.md#dirty-page-logging): one RAM blk
 * example process serves front-ends in turn, each its own process as tools/bench runs them, each
 * turning logging on after thousands of reads. Every connection's logged reads are marked. This is
 * the pattern in which Bun 1.4.5's optimizing JIT lost the back-end's `Atomics.or` stores to a
 * `Uint8Array` view of the mapped log (from the second or a later connection on, nothing was marked).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { startRamBlk } from "./helpers/ram-blk-process.js";

/** The package directory: the Node leg runs a bundle written next to this file in `test/`. */
const PACKAGE = import.meta.url.slice(0, import.meta.url.lastIndexOf("/test/") + 1);
const CLIENT = fileURLToPath(new URL("test/fixtures/dirty-log-client.mjs", PACKAGE));
const CONNECTIONS = 8;
const READS = 3000;
const PAIRS = 3;

test(`one RAM blk process, ${CONNECTIONS} front-end processes in turn (split and packed, QD1 and QD32), ${PAIRS} logged blocks of ${READS} reads each: every block is marked`, {
  timeout: 120_000,
}, async () => {
  const blk = await startRamBlk(["--size-mib", "8"]);
  try {
    for (let c = 0; c < CONNECTIONS; c++) {
      const layout = c % 2 === 0 ? "split" : "packed";
      const qd = c % 4 < 2 ? 1 : 32;
      const r = spawnSync(process.execPath, [CLIENT, blk.socket, layout, String(qd), String(READS), String(PAIRS)], { encoding: "utf8" });
      const line = r.stdout.trim().split("\n").at(-1) ?? "";
      assert.equal(r.status, 0, `connection ${c}: client failed:\n${r.stdout}${r.stderr}`);
      const { marked } = JSON.parse(line) as { marked: number[] };
      // The reads cycle through 4 MiB of the disk into guest buffers: at least the used ring's page
      // and one data page each time; a block with nothing marked is a lost store.
      assert.equal(marked.length, PAIRS, `connection ${c}`);
      for (const [i, n] of marked.entries()) assert.ok(n >= 2, `connection ${c} (${layout}, QD${qd}), logged block ${i}: ${n} pages marked`);
    }
  } finally {
    await blk.stop();
  }
});
