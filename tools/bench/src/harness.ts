/**
 * Shared benchmark plumbing: compile a C baseline with gcc, run a command and read its number,
 * interleave rounds, take medians, print a ratio table.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, statSync } from "node:fs";
import { join } from "node:path";

const here = import.meta.dir;
/** The repository root. */
export const root = join(here, "..", "..", "..");

/**
 * `--quick` (set by main.ts): every benchmark runs briefly — one round, small counts — to prove it
 * completes and prints its table. Its figures mean nothing.
 */
export const QUICK = process.argv.includes("--quick") || process.env["VHOSTKIT_BENCH_QUICK"] === "1";

/** `full` normally, `quick` under `--quick`: round counts and loop sizes. */
export function size(full: number, quick: number): number {
  return QUICK ? quick : full;
}

/** One printed table, as `--json` writes it: numeric-looking cells become numbers. */
export interface TableRecord {
  /** The benchmark that printed it (main.ts sets it). */
  benchmark: string;
  /** The lines printed above the table since the previous one (what the figures mean). */
  caption: string[];
  header: string[];
  rows: (string | number)[][];
}

/** Every table printed so far, in order (main.ts writes them with `--json`). */
export const recorded: TableRecord[] = [];
let currentBenchmark = "";
let caption: string[] = [];

/** Name the benchmark whose tables follow (main.ts). */
export function beginBenchmark(name: string): void {
  currentBenchmark = name;
  caption = [];
}

/** Print a line that explains the next table (kept as its caption in `--json`). */
export function note(line: string): void {
  console.log(line);
  caption.push(line);
}

/** Compile `tools/bench/c/<name>.c` with gcc -O2 into `tools/bench/c/bin/<name>` (when stale) and return its path. */
export function compileC(name: string): string {
  const src = join(here, "..", "c", `${name}.c`);
  const binDir = join(here, "..", "c", "bin");
  const bin = join(binDir, name);
  mkdirSync(binDir, { recursive: true });
  if (!existsSync(bin) || statSync(bin).mtimeMs < statSync(src).mtimeMs) {
    const r = spawnSync("gcc", ["-O2", "-Wall", "-o", bin, src], { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`gcc ${name}.c failed:\n${r.stderr}`);
  }
  return bin;
}

/** Run `cmd args` (with `env` added to this process's environment) and parse the last line of its stdout as a number. */
export function runNumber(cmd: string, args: string[], cwd = root, env: Record<string, string> = {}): number {
  return runFigures(cmd, args, cwd, env).value;
}

/**
 * Like {@link runNumber}, and also the labelled figures the command printed before its last line
 * (lines of the form `<label> <number>`, e.g. `cold 15478.7`).
 */
export function runFigures(cmd: string, args: string[], cwd = root, env: Record<string, string> = {}): { value: number; labelled: Record<string, number> } {
  const r = spawnSync(cmd, args, { cwd, encoding: "utf8", env: { ...process.env, ...env } });
  const lines = r.stdout.trim().split("\n");
  const v = Number(lines.at(-1) ?? "");
  if (r.status !== 0 || !Number.isFinite(v)) throw new Error(`${cmd} ${args.join(" ")} failed (${r.status}):\n${r.stdout}${r.stderr}`);
  const labelled: Record<string, number> = {};
  for (const line of lines.slice(0, -1)) {
    const m = /^([a-z]+) (-?[0-9.]+)$/.exec(line.trim());
    if (m?.[1] !== undefined) labelled[m[1]] = Number(m[2]);
  }
  return { value: v, labelled };
}

/** Median of `xs` (non-empty). */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? (s[mid] ?? 0) : ((s[mid - 1] ?? 0) + (s[mid] ?? 0)) / 2;
}

/**
 * Measure every named case `rounds` times, interleaved (A B C A B C ...) so that machine noise hits
 * all of them alike; returns the median of each.
 */
export function interleave(rounds: number, cases: Record<string, () => number>): Record<string, number> {
  const samples: Record<string, number[]> = {};
  for (let i = 0; i < rounds; i++) for (const [k, f] of Object.entries(cases)) (samples[k] ??= []).push(f());
  return Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, median(v)]));
}

/** Median and range of a set of samples. */
export interface Spread {
  median: number;
  lo: number;
  hi: number;
}

/** Median, lowest and highest of `xs` (non-empty). */
export function spread(xs: number[]): Spread {
  return { median: median(xs), lo: Math.min(...xs), hi: Math.max(...xs) };
}

/**
 * {@link interleave}, keeping every round's sample: `samples[k][i]` is case `k` in round `i`, so a
 * ratio can be taken per round (both figures measured seconds apart) before its median and range.
 */
export function interleaveSamples(rounds: number, cases: Record<string, () => number>): Record<string, number[]> {
  const samples: Record<string, number[]> = {};
  for (let i = 0; i < rounds; i++) for (const [k, f] of Object.entries(cases)) (samples[k] ??= []).push(f());
  return samples;
}

/**
 * Measure `a` against its baseline `b` in `rounds` back-to-back pairs, alternating which goes first,
 * and return both medians, the median of the per-pair ratios a ÷ b and their range (`min`, `max`). On
 * a VM whose speed drifts between seconds, the pair ratio cancels the drift that a ratio of two medians keeps.
 */
export function pairedRatio(rounds: number, a: () => number, b: () => number): { a: number; b: number; ratio: number; min: number; max: number } {
  const as: number[] = [];
  const bs: number[] = [];
  const ratios: number[] = [];
  for (let i = 0; i < rounds; i++) {
    let x: number;
    let y: number;
    if (i % 2 === 0) {
      x = a();
      y = b();
    } else {
      y = b();
      x = a();
    }
    as.push(x);
    bs.push(y);
    ratios.push(x / y);
  }
  return { a: median(as), b: median(bs), ratio: median(ratios), min: Math.min(...ratios), max: Math.max(...ratios) };
}

/** Print rows as an aligned table. */
export function table(header: string[], rows: (string | number)[][]): void {
  const num = (c: string | number): string | number => (typeof c === "number" || (c.trim() !== "" && Number.isFinite(Number(c))) ? Number(c) : c);
  recorded.push({ benchmark: currentBenchmark, caption, header, rows: rows.map((r) => r.map(num)) });
  caption = [];
  const cells = [header, ...rows.map((r) => r.map(String))];
  const width = header.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? "").length)));
  for (const r of cells) console.log(r.map((c, i) => c.padEnd(width[i] ?? 0)).join("  "));
}
