/**
 * Back-end benchmark (issue 6): the RAM blk example device on @vhostkit/backend against
 * qemu-storage-daemon's vhost-user-blk export (`--blockdev driver=null-co`), both driven by the same
 * vhostkit front-end (BlkDriver), 4 KiB reads at queue depth 1 and 32, in back-to-back pairs (order
 * alternating) in the same run. Prints IOPS and the median pair ratio vhostkit ÷ qsd (target >= 1.0),
 * for the RAM device as it is (it copies every 4 KiB) and with `--discard`, which does the work
 * null-co does (status byte only) — the like-for-like comparison of the two frameworks.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { startQsd } from "@vhostkit/peers/qsd";
import { median, note, pairedRatio, root, size, table } from "./harness.js";
import { processCpuNs } from "./process-cpu.mjs";

/** `f()`, pushing the CPU µs per request that process `pid` spent during it (`requests` counted, the client's warm-up included) onto `into`. */
function withCpu(pid: number, requests: number, into: number[], f: () => number): number {
  const t0 = processCpuNs(pid);
  const v = f();
  into.push((processCpuNs(pid) - t0) / requests / 1000);
  return v;
}

/** One client run: its IOPS, and the CPU µs per request it (the driver) reported, pushed onto `driverCpu`. */
function runClient(args: string[], driverCpu: number[]): number {
  const r = spawnSync(process.execPath, args, { cwd: root, encoding: "utf8" });
  const lines = r.stdout.trim().split("\n");
  const iops = Number(lines.at(-1));
  const cpu = Number(lines.find((l) => l.startsWith("driver-cpu "))?.slice("driver-cpu ".length));
  if (r.status !== 0 || !Number.isFinite(iops) || !Number.isFinite(cpu))
    throw new Error(`backend client ${args.join(" ")} failed (${r.status}):\n${r.stdout}${r.stderr}`);
  driverCpu.push(cpu);
  return iops;
}

/** Start the RAM blk example (with `args`) on a socket in `dir`; resolves once it listens. */
export async function startDevice(dir: string, name: string, args: string[]): Promise<{ socket: string; child: ChildProcess }> {
  const socket = join(dir, `${name}.sock`);
  const child = spawn(
    process.env["VHOSTKIT_BENCH_DEVICE_RUNTIME"] ?? process.execPath,
    [join(root, "packages/backend/examples/ram-blk.mjs"), "--socket", socket, "--size-mib", "64", ...args],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  await new Promise<void>((resolve) => createInterface({ input: child.stdout! }).on("line", (l) => l.startsWith("listening") && resolve()));
  return { socket, child };
}

/** Run the back-end benchmark and print its table. */
export async function run(): Promise<void> {
  const n = Number(process.env["VHOSTKIT_BENCH_IOS"] ?? size(20000, 200));
  const rounds = Number(process.env["VHOSTKIT_BENCH_ROUNDS"] ?? size(5, 1));
  const client = join(import.meta.dir, "backend-blk-client.mjs");
  const dir = mkdtempSync(join(tmpdir(), "vhostkit-bench-blk-"));
  // The RAM device copies every 4 KiB; with --discard it does what null-co does (status only).
  const devices = [
    { label: "ram-blk", ...(await startDevice(dir, "ram-blk", [])) },
    { label: "ram-blk --discard", ...(await startDevice(dir, "discard", ["--discard"])) },
  ];
  const qsd = await startQsd({ backend: "null-co", sizeBytes: 64 * 1024 * 1024 });
  try {
    const rows: (string | number)[][] = [];
    for (const d of devices) {
      for (const qd of [1, 32]) {
        // QD32 runs 10x as many reads: 20 000 of them take about 25 ms there, too short a sample.
        const reads = qd === 32 ? n * 10 : n;
        const requests = reads + (reads < 2000 ? reads : Math.max(2000, reads / 5)); // the client's warm-up runs first
        const cpuA: number[] = [];
        const cpuB: number[] = [];
        const driverA: number[] = [];
        const driverB: number[] = [];
        const m = pairedRatio(
          rounds,
          () => withCpu(d.child.pid ?? -1, requests, cpuA, () => runClient([client, d.socket, String(qd), String(reads)], driverA)),
          () => withCpu(qsd.pid, requests, cpuB, () => runClient([client, qsd.socketPath, String(qd), String(reads)], driverB)),
        );
        const cpuRatios = cpuA.map((a, i) => a / (cpuB[i] ?? Number.NaN));
        rows.push([
          `QD${qd}`,
          d.label,
          m.a.toFixed(0),
          m.b.toFixed(0),
          m.ratio.toFixed(2),
          `${m.min.toFixed(2)}–${m.max.toFixed(2)}`,
          `${median(cpuA).toFixed(1)} / ${median(cpuB).toFixed(1)}`,
          median(cpuRatios).toFixed(2),
          `${median(driverA).toFixed(1)} / ${median(driverB).toFixed(1)}`,
        ]);
      }
    }
    note(
      `4 KiB reads, IOPS (medians of ${rounds} back-to-back pairs of ${n} at QD1, ${n * 10} at QD32; ÷ = median of the pair ratios, then their range); target vhostkit ÷ qsd >= 1.0 at QD1, >= 1.5 at QD32`,
    );
    note("device CPU: µs per request of the device process (all threads; the reactor's spin included), vhostkit / qsd, and the median of the pair ratios");
    note("driver CPU: µs per request of the client process (the same vhostkit driver in front of both; its spin included), with vhostkit / with qsd");
    table(["depth", "vhostkit device", "vhostkit", "qsd null-co", "÷ qsd", "pairs", "device CPU µs", "CPU ÷ qsd", "driver CPU µs"], rows);
  } finally {
    await qsd.stop();
    for (const d of devices) d.child.kill("SIGTERM");
    rmSync(dir, { recursive: true, force: true });
  }
}
