/**
 * Runs every benchmark (or those named on the command line: `bun src/main.ts wire transport`).
 * Each benchmark module prints its own table; figures are ratios against a baseline from the same run.
 *
 * `--quick`: each benchmark runs briefly (one round, small counts): proves that it completes and
 * prints its table, nothing more (the test suite runs it). `--json <file>` (or `--json=<file>`;
 * default `bench.json`): also writes every table printed to `<file>` (format: {@link BenchReport}),
 * for comparing figures between commits.
 */
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { QUICK, beginBenchmark, recorded, root, type TableRecord } from "./harness.js";

/** The benchmarks, in the order they run. */
export const BENCHMARKS = [
  "wire",
  "transport",
  "regions",
  "virtqueue",
  "backend",
  "inflight",
  "dirtylog",
  "fallback",
  "shmem",
  "trace",
  "ffi",
  "scale",
  "net",
  "netdev",
] as const;

/** What `--json` writes. */
export interface BenchReport {
  /** Format version: 1. */
  version: 1;
  /** ISO date of the run's end. */
  date: string;
  /** `git rev-parse HEAD` of the tree measured ("" outside a git checkout). */
  commit: string;
  /** Whether the run was `--quick` (figures meaningless). */
  quick: boolean;
  /** Runtime versions: bun, node. */
  runtimes: { bun: string; node: string };
  /** The benchmarks run, in order. */
  benchmarks: string[];
  /** Every table printed, in order. */
  tables: TableRecord[];
}

const argv = process.argv.slice(2);
let jsonPath: string | undefined;
const wanted: string[] = [];
for (let i = 0; i < argv.length; i++) {
  const a = argv[i] ?? "";
  if (a === "--quick") continue;
  if (a === "--json") {
    const next = argv[i + 1];
    jsonPath = next !== undefined && !next.startsWith("-") && !(BENCHMARKS as readonly string[]).includes(next) ? next : "bench.json";
    if (jsonPath === next) i++;
  } else if (a.startsWith("--json=")) jsonPath = a.slice("--json=".length);
  else if ((BENCHMARKS as readonly string[]).includes(a)) wanted.push(a);
  else throw new Error(`unknown argument ${a}: expected --quick, --json [file] or benchmark names (${BENCHMARKS.join(", ")})`);
}
if (QUICK) console.log("--quick: one short round each; the figures below mean nothing");
const ran: string[] = [];
for (const name of BENCHMARKS) {
  if (wanted.length > 0 && !wanted.includes(name)) continue;
  const mod = (await import(`./${name}.ts`)) as { run(): Promise<void> };
  console.log(`\n== ${name} ==`);
  beginBenchmark(name);
  await mod.run();
  ran.push(name);
}
if (jsonPath !== undefined) {
  const text = (cmd: string, args: string[]): string => spawnSync(cmd, args, { cwd: root, encoding: "utf8" }).stdout?.trim() ?? "";
  const report: BenchReport = {
    version: 1,
    date: new Date().toISOString(),
    commit: text("git", ["rev-parse", "HEAD"]),
    quick: QUICK,
    runtimes: { bun: Bun.version, node: text("node", ["--version"]).replace(/^v/, "") },
    benchmarks: ran,
    tables: recorded,
  };
  const out = resolve(jsonPath);
  writeFileSync(out, `${JSON.stringify(report, null, 2)}\n`);
  console.log(`\nwrote ${out}`);
}
