/**
 * `bun run bench --quick --json <file>` (issue 17): every benchmark completes and prints its
 * table(s), and the JSON file holds the same tables. No timing is asserted (speed goals live in the
 * benchmarks' own output, never in tests). The benchmarks are Bun programs: under Node this test
 * runs them with the repository's Bun. The backend benchmark needs qemu-storage-daemon from
 * `@vhostkit/peers` and fails at once, saying what to run, when it was not fetched.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../../..", import.meta.url));
const BUN = "bun" in process.versions ? process.execPath : join(ROOT, "node_modules/.bin/bun");
/** Each benchmark, in the order run, with the number of tables it prints. */
const TABLES: Record<string, number> = {
  wire: 1,
  transport: 4,
  regions: 1,
  virtqueue: 1,
  backend: 1,
  inflight: 1,
  dirtylog: 2,
  fallback: 3,
  shmem: 4,
  trace: 1,
  ffi: 1,
  scale: 3,
  net: 1,
  netdev: 1,
};

// Some benchmarks start real peers (QEMU 11.1 guests, DPDK testpmd): the whole quick run takes a few minutes on a loaded 2-core machine.
test("bench --quick runs every benchmark, prints each table and writes them all with --json", { timeout: 600_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), "vhostkit-bench-quick-"));
  try {
    const out = join(dir, "bench.json");
    const r = spawnSync(BUN, [join(ROOT, "tools/bench/src/main.ts"), "--quick", "--json", out], {
      cwd: ROOT,
      encoding: "utf8",
      timeout: 580_000,
      killSignal: "SIGKILL",
      maxBuffer: 64 << 20,
    });
    assert.equal(r.status, 0, `bench --quick failed (status ${r.status}, signal ${r.signal}):\n${r.stdout}\n${r.stderr}`);
    // Each benchmark's section, each followed by its tables: a header line and at least one row.
    const sections = r.stdout.split(/^== (\w+) ==$/m);
    const names = sections.filter((_, i) => i % 2 === 1);
    assert.deepEqual(names, Object.keys(TABLES));
    const report = JSON.parse(readFileSync(out, "utf8")) as {
      version: number;
      date: string;
      commit: string;
      quick: boolean;
      runtimes: { bun: string; node: string };
      benchmarks: string[];
      tables: { benchmark: string; caption: string[]; header: string[]; rows: (string | number)[][] }[];
    };
    assert.equal(report.version, 1);
    assert.equal(report.quick, true);
    assert.ok(!Number.isNaN(Date.parse(report.date)), report.date);
    assert.match(report.commit, /^([0-9a-f]{40})?$/);
    assert.match(report.runtimes.bun, /^\d+\.\d+\.\d+/);
    assert.match(report.runtimes.node, /^\d+\.\d+\.\d+/);
    assert.deepEqual(report.benchmarks, Object.keys(TABLES));
    for (const [name, count] of Object.entries(TABLES)) {
      const tables = report.tables.filter((t) => t.benchmark === name);
      assert.equal(tables.length, count, `${name}: ${tables.length} tables`);
      const text = sections[sections.indexOf(name) + 1] ?? "";
      for (const t of tables) {
        assert.ok(t.caption.length > 0, `${name}: a caption says what the figures are`);
        assert.ok(t.header.length >= 2 && t.rows.length >= 1, `${name}: ${JSON.stringify(t)}`);
        for (const row of t.rows) {
          assert.equal(row.length, t.header.length, `${name}: ${JSON.stringify(row)}`);
          assert.ok(
            row.some((c) => typeof c === "number" || /\d/.test(c)),
            `${name}: a row without figures: ${JSON.stringify(row)}`,
          );
        }
        // The table as printed: its header cells on one line.
        assert.ok(
          text.split("\n").some((l) => t.header.every((h) => l.includes(h))),
          `${name}: header ${t.header.join(" ")} not printed`,
        );
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
