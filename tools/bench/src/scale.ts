/**
 * Scale benchmark (issue 17): one back-end process serving 16 front-end connections at once
 * (scale-backend.ts: 16 null block devices, 4 queues each, one socket each) and one front-end
 * process driving them (scale-frontend.ts: one guest, the devices added one by one, every queue at
 * depth 4 with null 4 KiB reads). For 1, 2, 4, 8 and 16 devices: aggregate requests/s against N×
 * the 1-device figure of the same round, wall and CPU time per request (front-end + back-end
 * process: flat from 1 to 16 devices means no cost grows with the number of devices), the cores
 * busy, and the resident memory each further device costs in each process. Then the same with a
 * device that takes `LATENCY_MS` per batch (a slow disk), where one device leaves the CPU idle and
 * N devices can reach N× its figure; there each request is submitted again from its completion
 * callback (`DriverQueue.post`), so a queue's batch goes back whole (scale-frontend.ts). Median (min–max) of `ROUNDS` rounds, each a fresh front-end
 * process (the back-end process serves every round: each device takes the next front-end after the
 * previous one disconnected).
 */
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { QUICK, median, note, size, table } from "./harness.js";
import type { ScaleDriver, ScaleSample } from "./scale-frontend.js";

const ROUNDS = Number(process.env["VHOSTKIT_BENCH_ROUNDS"] ?? size(5, 1));
/** Device counts; each is measured for `MS` ms after a quarter of that as warm-up. */
const COUNTS = (process.env["VHOSTKIT_BENCH_SCALE_COUNTS"] ?? (QUICK ? "1,16" : "1,2,4,8,16")).split(",").map(Number);
const MS = Number(process.env["VHOSTKIT_BENCH_SCALE_MS"] ?? size(1000, 100));
/** Requests in flight per queue. */
const QD = 4;
/** The slow device's time per popped batch, ms. */
const LATENCY_MS = 5;
const DEVICES = Math.max(...COUNTS);

/** `median (min–max)` with `digits` decimals. */
function spreadText(xs: number[], digits: number): string {
  return `${median(xs).toFixed(digits)} (${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)})`;
}

/** One back-end process with `DEVICES` devices of `latencyMs`, `ROUNDS` front-end processes against it; every round's samples. */
async function measure(dir: string, name: string, latencyMs: number, driver: ScaleDriver): Promise<ScaleSample[][]> {
  const prefix = join(dir, name);
  const script = join(import.meta.dir, "scale-backend.ts");
  const backend = spawn(process.execPath, [script, prefix, String(DEVICES), String(latencyMs)], { stdio: ["ignore", "pipe", "inherit"] });
  try {
    await new Promise<void>((resolve, reject) => {
      backend.once("exit", (code) => reject(new Error(`scale-backend exited (${code}) before listening`)));
      createInterface({ input: backend.stdout! }).on("line", (l) => l === "listening" && resolve());
    });
    const rounds: ScaleSample[][] = [];
    for (let r = 0; r < ROUNDS; r++) {
      const args = [join(import.meta.dir, "scale-frontend.ts"), prefix, String(backend.pid), COUNTS.join(","), String(MS), String(QD), driver];
      const fe = spawnSync(process.execPath, args, { encoding: "utf8", timeout: 600_000 });
      if (fe.status !== 0) throw new Error(`scale-frontend failed (${fe.status} ${fe.signal}):\n${fe.stdout}${fe.stderr}`);
      const lines = fe.stdout.trim().split("\n");
      rounds.push(lines.filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as ScaleSample));
    }
    return rounds;
  } finally {
    backend.kill("SIGTERM");
  }
}

const at = (round: ScaleSample[], n: number): ScaleSample => round.find((s) => s.devices === n) as ScaleSample;
const rate = (s: ScaleSample): number => (s.requests * 1e9) / s.wallNs;
const cpu = (s: ScaleSample): number => (s.frontendCpuUs + s.backendCpuUs) / s.requests;
const cores = (s: ScaleSample): number => (s.frontendCpuUs + s.backendCpuUs) / (s.wallNs / 1000);

/** Per device count, `f` of each round (with that round's 1-device sample), as `median (min–max)`. */
function column(rounds: ScaleSample[][], n: number, digits: number, f: (s: ScaleSample, one: ScaleSample) => number): string {
  return spreadText(
    rounds.map((round) => f(at(round, n), at(round, COUNTS[0] ?? 1))),
    digits,
  );
}

/** Run the scale benchmark and print its tables. */
export async function run(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "vhostkit-bench-scale-"));
  try {
    const rounds = await measure(dir, "null", 0, "transfer");
    const rows = COUNTS.map((n) => [
      n,
      n * 4,
      column(rounds, n, 1, (s) => rate(s) / 1000),
      column(rounds, n, 2, (s, one) => rate(s) / (n * rate(one))),
      column(rounds, n, 2, (s, one) => rate(s) / rate(one)),
      column(rounds, n, 2, (s, one) => rate(s) / (2e6 / cpu(one))),
      column(rounds, n, 2, (s) => s.wallNs / 1000 / s.requests),
      column(rounds, n, 2, cpu),
      column(rounds, n, 2, (s) => s.frontendCpuUs / s.requests),
      column(rounds, n, 2, cores),
    ]);
    note(
      `${DEVICES} null block devices × 4 queues in one back-end process, driven by one front-end process at depth ${QD} per queue (null 4 KiB reads); median (min–max) of ${ROUNDS} rounds of ${MS} ms per device count`,
    );
    note(
      "÷ N×1: aggregate requests/s ÷ (N × the 1-device figure of the same round), the issue's goal is ≥ 0.8 at 16; ÷ 2-core bound: ÷ what two cores would serve at the 1-device CPU cost per request (2 s ÷ CPU µs per request); CPU µs: both processes' user+system time per request (front-end share apart); cores: CPU time ÷ wall time",
    );
    table(
      ["devices", "queues", "k requests/s", "÷ N×1", "÷ 1 device", "÷ 2-core bound", "wall µs/request", "CPU µs/request", "front-end CPU µs", "cores busy"],
      rows,
    );
    const first = COUNTS[0] ?? 1;
    const span = DEVICES - first;
    const perDevice = (pick: (s: ScaleSample) => number): string =>
      spreadText(
        rounds.map((round) => (pick(at(round, DEVICES)) - pick(at(round, first))) / span),
        0,
      );
    const rss = (n: number, pick: (s: ScaleSample) => number): string => median(rounds.map((round) => pick(at(round, n)))).toFixed(0);
    note(`\nresident memory per further device (RSS at ${DEVICES} devices − RSS at ${first}) ÷ ${span}, KiB, median (min–max); after a GC in both processes`);
    table(
      ["process", "KiB per device", `RSS at ${first} device(s) KiB`, `RSS at ${DEVICES} KiB`],
      [
        ["front-end", perDevice((s) => s.frontendRssKiB), rss(first, (s) => s.frontendRssKiB), rss(DEVICES, (s) => s.frontendRssKiB)],
        ["back-end", perDevice((s) => s.backendRssKiB), rss(first, (s) => s.backendRssKiB), rss(DEVICES, (s) => s.backendRssKiB)],
      ],
    );
    const slow = await measure(dir, "slow", LATENCY_MS, "posted");
    note(
      `\nthe same with a device that completes each popped batch ${LATENCY_MS} ms later (a slow disk: one device leaves the CPU idle, so N devices can reach N× its figure), each request submitted again from its completion callback (DriverQueue.post, buffers pinned once: a queue's completed requests go back to the ring together, so the device pops whole batches; with transfer's promise per request they resume one by one and the device takes partial batches); median (min–max) of ${ROUNDS} rounds`,
    );
    table(
      ["devices", "k requests/s", "÷ N×1", "CPU µs/request", "cores busy"],
      COUNTS.map((n) => [
        n,
        column(slow, n, 2, (s) => rate(s) / 1000),
        column(slow, n, 2, (s, one) => rate(s) / (n * rate(one))),
        column(slow, n, 2, cpu),
        column(slow, n, 2, cores),
      ]),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
