/**
 * Scale benchmark (issue 17): one back-end process serving 16 front-end connections at once
 * (scale-backend.ts: 16 null block devices, 4 queues each, one socket each) and one front-end
 * process driving them (scale-frontend.ts: one guest, the devices added one by one, every queue at
 * depth 4 with null 4 KiB reads). For 1, 2, 4, 8 and 16 devices: aggregate requests/s against N×
 * the 1-device figure of the same round, wall and CPU time per request (front-end + back-end
 * process: flat from 1 to 16 devices means no cost grows with the number of devices), the cores
 * busy, and the resident memory each further device costs in each process. Median (min–max) of
 * `ROUNDS` rounds, each a fresh front-end process (the back-end process serves every round: each
 * device takes the next front-end after the previous one disconnected).
 */
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { QUICK, median, note, size, table } from "./harness.js";
import type { ScaleSample } from "./scale-frontend.js";

const ROUNDS = Number(process.env["VHOSTKIT_BENCH_ROUNDS"] ?? size(5, 1));
/** Device counts; each is measured for `MS` ms after a quarter of that as warm-up. */
const COUNTS = (process.env["VHOSTKIT_BENCH_SCALE_COUNTS"] ?? (QUICK ? "1,16" : "1,2,4,8,16")).split(",").map(Number);
const MS = Number(process.env["VHOSTKIT_BENCH_SCALE_MS"] ?? size(1000, 100));
/** Requests in flight per queue. */
const QD = 4;
const DEVICES = Math.max(...COUNTS);

/** `median (min–max)` with `digits` decimals. */
function spreadText(xs: number[], digits: number): string {
  return `${median(xs).toFixed(digits)} (${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)})`;
}

/** Run the scale benchmark and print its tables. */
export async function run(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "vhostkit-bench-scale-"));
  const prefix = join(dir, "blk");
  const backend = spawn(process.execPath, [join(import.meta.dir, "scale-backend.ts"), prefix, String(DEVICES)], { stdio: ["ignore", "pipe", "inherit"] });
  try {
    await new Promise<void>((resolve, reject) => {
      backend.once("exit", (code) => reject(new Error(`scale-backend exited (${code}) before listening`)));
      createInterface({ input: backend.stdout! }).on("line", (l) => l === "listening" && resolve());
    });
    const rounds: ScaleSample[][] = [];
    for (let r = 0; r < ROUNDS; r++) {
      const fe = spawnSync(
        process.execPath,
        [join(import.meta.dir, "scale-frontend.ts"), prefix, String(backend.pid), COUNTS.join(","), String(MS), String(QD)],
        { encoding: "utf8", timeout: 600_000 },
      );
      if (fe.status !== 0) throw new Error(`scale-frontend failed (${fe.status} ${fe.signal}):\n${fe.stdout}${fe.stderr}`);
      rounds.push(
        fe.stdout
          .trim()
          .split("\n")
          .filter((l) => l.startsWith("{"))
          .map((l) => JSON.parse(l) as ScaleSample),
      );
    }
    const at = (round: ScaleSample[], n: number): ScaleSample => round.find((s) => s.devices === n) as ScaleSample;
    const rate = (s: ScaleSample): number => (s.requests * 1e9) / s.wallNs;
    const cpu = (s: ScaleSample): number => (s.frontendCpuUs + s.backendCpuUs) / s.requests;
    const rows = COUNTS.map((n) => {
      const of = (f: (s: ScaleSample, one: ScaleSample) => number): number[] => rounds.map((round) => f(at(round, n), at(round, COUNTS[0] ?? 1)));
      return [
        n,
        n * 4,
        spreadText(
          of((s) => rate(s) / 1000),
          1,
        ),
        spreadText(
          of((s, one) => rate(s) / (n * rate(one))),
          2,
        ),
        spreadText(
          of((s, one) => rate(s) / rate(one)),
          2,
        ),
        spreadText(
          of((s, one) => rate(s) / (2e6 / cpu(one))),
          2,
        ),
        spreadText(
          of((s) => s.wallNs / 1000 / s.requests),
          2,
        ),
        spreadText(
          of((s) => cpu(s)),
          2,
        ),
        spreadText(
          of((s) => s.frontendCpuUs / s.requests),
          2,
        ),
        spreadText(
          of((s) => (s.frontendCpuUs + s.backendCpuUs) / (s.wallNs / 1000)),
          2,
        ),
      ];
    });
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
    const perDevice = (pick: (s: ScaleSample) => number): number[] => rounds.map((round) => (pick(at(round, DEVICES)) - pick(at(round, first))) / span);
    note(`\nresident memory per further device (RSS at ${DEVICES} devices − RSS at ${first}) ÷ ${span}, KiB, median (min–max); after a GC in both processes`);
    table(
      ["process", "KiB per device", `RSS at ${first} device(s) KiB`, `RSS at ${DEVICES} KiB`],
      [
        [
          "front-end",
          spreadText(
            perDevice((s) => s.frontendRssKiB),
            0,
          ),
          median(rounds.map((round) => at(round, first).frontendRssKiB)).toFixed(0),
          median(rounds.map((round) => at(round, DEVICES).frontendRssKiB)).toFixed(0),
        ],
        [
          "back-end",
          spreadText(
            perDevice((s) => s.backendRssKiB),
            0,
          ),
          median(rounds.map((round) => at(round, first).backendRssKiB)).toFixed(0),
          median(rounds.map((round) => at(round, DEVICES).backendRssKiB)).toFixed(0),
        ],
      ],
    );
  } finally {
    backend.kill("SIGTERM");
    rmSync(dir, { recursive: true, force: true });
  }
}
