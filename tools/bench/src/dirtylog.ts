/**
 * The cost of dirty page logging (issue 18, docs/protocol.md#dirty-page-logging) in the blk benchmark: the
 * RAM blk example device, 4 KiB reads at queue depth 1 and 32 on split and packed rings, one client
 * connection per row alternating blocks of reads with logging on (Device.startDirtyLog: LOG_ALL
 * and the ring log flag; the back-end marks every data page, status byte and ring write in the
 * shared bitmap) and off, the order alternating between pairs. Each pair's blocks run back to back
 * in one process, so a busy machine slows both alike. Prints both medians, the median of the pair
 * ratios and their spread (lowest and highest ratio); goal: logging on ÷ off >= 0.80. A second table
 * gives the CPU time the device process spent per request in the same blocks (all its threads, from
 * /proc), which a loaded machine disturbs far less than the wall-clock rate.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startDevice } from "./backend.js";
import { median, note, root, size, spread, table } from "./harness.js";

/** What one client run measured per block: IOPS, and the device's CPU microseconds per request. */
interface Blocks {
  on: number[];
  off: number[];
  onCpu: number[];
  offCpu: number[];
}

/** Reads on `socket` (device process `pid`) in `count` on/off pairs of `n` at depth `qd` on `layout` rings. */
function pairs(socket: string, pid: number, qd: number, n: number, count: number, layout: string): Blocks {
  const client = join(import.meta.dir, "backend-blk-client.mjs");
  const args = [client, socket, String(qd), String(n), "log-pairs", layout, String(count), String(pid)];
  const r = spawnSync(process.execPath, args, { cwd: root, encoding: "utf8" });
  const line = r.stdout.trim().split("\n").at(-1) ?? "";
  if (r.status !== 0 || !line.startsWith("{")) throw new Error(`dirtylog client failed (${r.status}):\n${r.stdout}${r.stderr}`);
  return JSON.parse(line) as Blocks;
}

/** Median and spread of the pairwise ratios `a[i] / b[i]`, as table cells. */
function ratioCells(a: number[], b: number[]): string[] {
  const r = spread(a.map((x, i) => x / (b[i] as number)));
  return [r.median.toFixed(3), `${r.lo.toFixed(3)}–${r.hi.toFixed(3)}`];
}

/** Run the dirty-log benchmark and print its table. */
export async function run(): Promise<void> {
  // Blocks of 20 000 reads: at 4 000 (20–70 ms a block) one run's medians followed the VM's load.
  const n = Number(process.env["VHOSTKIT_BENCH_IOS"] ?? size(20_000, 200));
  const rounds = Number(process.env["VHOSTKIT_BENCH_ROUNDS"] ?? size(9, 1));
  const dir = mkdtempSync(join(tmpdir(), "vhostkit-bench-dirtylog-"));
  const device = await startDevice(dir, "ram-blk", []);
  try {
    const rows: (string | number)[][] = [];
    const cpuRows: (string | number)[][] = [];
    for (const layout of ["split", "packed"])
      for (const qd of [1, 32]) {
        const b = pairs(device.socket, device.child.pid ?? 0, qd, n, rounds, layout);
        rows.push([layout, `QD${qd}`, median(b.on).toFixed(0), median(b.off).toFixed(0), ...ratioCells(b.on, b.off)]);
        cpuRows.push([layout, `QD${qd}`, median(b.onCpu).toFixed(2), median(b.offCpu).toFixed(2), ...ratioCells(b.onCpu, b.offCpu)]);
      }
    note(`4 KiB reads on the RAM blk device, IOPS (medians of ${rounds} back-to-back pairs of ${n} in one connection); goal: logging on ÷ off >= 0.80`);
    table(["rings", "depth", "logging on", "logging off", "on ÷ off (median)", "on ÷ off (lowest–highest)"], rows);
    note("the same blocks: CPU time of the device process per request, µs (all threads); on ÷ off: the cost of logging itself");
    table(["rings", "depth", "CPU on", "CPU off", "on ÷ off (median)", "on ÷ off (lowest–highest)"], cpuRows);
  } finally {
    device.child.kill("SIGTERM");
    rmSync(dir, { recursive: true, force: true });
  }
}
