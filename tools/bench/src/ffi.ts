/**
 * FFI benchmark (issue 17): the transport's hot system calls — sendmsg/recvmsg, a recvmsg that finds
 * nothing (EAGAIN), eventfd write/read, a zero-timeout epoll_wait, and getpid for reference —
 * through koffi (the transport's prototypes) and through `bun:ffi`, on Bun, in the same process and
 * the same run (ffi-calls.ts; one process per round, the order of the two alternating). Prints ns
 * per call, median (min–max) of the rounds, and koffi ÷ bun:ffi (the median of the per-round
 * ratios, with its spread). The bar for a `bun:ffi` leg behind the `sys` interface: ≥ 1.5.
 */
import { join } from "node:path";
import { median, note, root, size, table } from "./harness.js";
import { spawnSync } from "node:child_process";

/** Run the ffi benchmark and print its table. */
export async function run(): Promise<void> {
  const script = join(import.meta.dir, "ffi-calls.ts");
  const n = Number(process.env["VHOSTKIT_BENCH_CALLS"] ?? size(200000, 2000));
  const rounds = Number(process.env["VHOSTKIT_BENCH_ROUNDS"] ?? size(7, 1));
  const samples: Record<string, { koffi: number[]; ffi: number[]; ratio: number[] }> = {};
  for (let i = 0; i < rounds; i++) {
    const r = spawnSync(process.execPath, [script, String(n), i % 2 === 0 ? "koffi-first" : "bun-ffi-first"], { cwd: root, encoding: "utf8" });
    if (r.status !== 0) throw new Error(`ffi-calls.ts failed (${r.status}):\n${r.stdout}${r.stderr}`);
    const got = JSON.parse(r.stdout.trim().split("\n").at(-1) ?? "{}") as Record<string, { koffi: number; "bun:ffi": number }>;
    for (const [name, v] of Object.entries(got)) {
      const s = (samples[name] ??= { koffi: [], ffi: [], ratio: [] });
      s.koffi.push(v.koffi);
      s.ffi.push(v["bun:ffi"]);
      s.ratio.push(v.koffi / v["bun:ffi"]);
    }
  }
  const spread = (xs: number[], digits: number): string =>
    `${median(xs).toFixed(digits)} (${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)})`;
  const rows = Object.entries(samples).map(([name, s]) => [
    name,
    spread(s.koffi, 0),
    spread(s.ffi, 0),
    spread(s.ratio, 2),
    median(s.ratio) >= 1.5 ? "yes" : "no",
  ]);
  note(
    `ns per call on Bun, median (min–max) of ${rounds} rounds of ${n} calls each; koffi ÷ bun:ffi: median of the per-round ratios; switch a call when ≥ 1.5`,
  );
  table(["call", "koffi ns", "bun:ffi ns", "koffi ÷ bun:ffi", "≥ 1.5"], rows);
}
