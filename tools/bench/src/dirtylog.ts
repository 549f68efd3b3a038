/**
 * The cost of dirty page logging (issue 18, docs/protocol.md#dirty-page-logging) in the blk benchmark: the
 * RAM blk example device, 4 KiB reads at queue depth 1 and 32 on split and packed rings, one client
 * connection per row alternating blocks of reads with logging on (Device.startDirtyLog: LOG_ALL
 * and the ring log flag; the back-end marks every data page, status byte and ring write in the
 * shared bitmap) and off, the order alternating between pairs. Each pair's blocks run back to back
 * in one process, so a busy machine slows both alike. Prints both medians, the median of the pair
 * ratios and their spread (lowest and highest ratio); goal: logging on ÷ off >= 0.80.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startDevice } from "./backend.js";
import { median, note, root, size, spread, table } from "./harness.js";

/** Reads on `socket` in `pairs` on/off pairs of `n` at depth `qd` on `layout` rings: IOPS per block. */
function pairs(socket: string, qd: number, n: number, count: number, layout: string): { on: number[]; off: number[] } {
  const client = join(import.meta.dir, "backend-blk-client.mjs");
  const r = spawnSync(process.execPath, [client, socket, String(qd), String(n), "log-pairs", layout, String(count)], { cwd: root, encoding: "utf8" });
  const line = r.stdout.trim().split("\n").at(-1) ?? "";
  if (r.status !== 0 || !line.startsWith("{")) throw new Error(`dirtylog client failed (${r.status}):\n${r.stdout}${r.stderr}`);
  return JSON.parse(line) as { on: number[]; off: number[] };
}

/** Run the dirty-log benchmark and print its table. */
export async function run(): Promise<void> {
  const n = Number(process.env["VHOSTKIT_BENCH_IOS"] ?? size(4000, 200));
  const rounds = Number(process.env["VHOSTKIT_BENCH_ROUNDS"] ?? size(15, 1));
  const dir = mkdtempSync(join(tmpdir(), "vhostkit-bench-dirtylog-"));
  const device = await startDevice(dir, "ram-blk", []);
  try {
    const rows: (string | number)[][] = [];
    for (const layout of ["split", "packed"])
      for (const qd of [1, 32]) {
        const { on, off } = pairs(device.socket, qd, n, rounds, layout);
        const r = spread(on.map((x, i) => x / (off[i] as number)));
        rows.push([layout, `QD${qd}`, median(on).toFixed(0), median(off).toFixed(0), r.median.toFixed(3), `${r.lo.toFixed(3)}–${r.hi.toFixed(3)}`]);
      }
    note(`4 KiB reads on the RAM blk device, IOPS (medians of ${rounds} back-to-back pairs of ${n} in one connection); goal: logging on ÷ off >= 0.80`);
    table(["rings", "depth", "logging on", "logging off", "on ÷ off (median)", "on ÷ off (lowest–highest)"], rows);
  } finally {
    device.child.kill("SIGTERM");
    rmSync(dir, { recursive: true, force: true });
  }
}
