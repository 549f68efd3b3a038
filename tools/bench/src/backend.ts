/**
 * Back-end benchmark (issue 6): the RAM blk example device on @vhostkit/backend against
 * qemu-storage-daemon's vhost-user-blk export (`--blockdev driver=null-co`), both driven by the same
 * vhostkit front-end (BlkDriver), 4 KiB reads at queue depth 1 and 32, in back-to-back pairs (order
 * alternating) in the same run. Prints IOPS and the median pair ratio vhostkit ÷ qsd (target >= 1.0). The RAM device copies real data; null-co does
 * not, so the comparison is conservative for vhostkit.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { startQsd } from "@vhostkit/peers/qsd";
import { pairedRatio, root, runNumber, table } from "./harness.js";

/** Run the back-end benchmark and print its table. */
export async function run(): Promise<void> {
  const n = Number(process.env["VHOSTKIT_BENCH_IOS"] ?? 20000);
  const rounds = Number(process.env["VHOSTKIT_BENCH_ROUNDS"] ?? 5);
  const client = join(import.meta.dir, "backend-blk-client.mjs");
  const dir = mkdtempSync(join(tmpdir(), "vhostkit-bench-blk-"));
  const sock = join(dir, "ram-blk.sock");
  const dev = spawn(process.env["VHOSTKIT_BENCH_DEVICE_RUNTIME"] ?? process.execPath, [join(root, "packages/backend/examples/ram-blk.mjs"), "--socket", sock, "--size-mib", "64"], { stdio: ["ignore", "pipe", "inherit"] });
  await new Promise<void>((resolve) => createInterface({ input: dev.stdout }).on("line", (l) => l.startsWith("listening") && resolve()));
  const qsd = await startQsd({ backend: "null-co", sizeBytes: 64 * 1024 * 1024 });
  try {
    const rows: (string | number)[][] = [];
    for (const qd of [1, 32]) {
      const m = pairedRatio(
        rounds,
        () => runNumber(process.execPath, [client, sock, String(qd), String(n)]),
        () => runNumber(process.execPath, [client, qsd.socketPath, String(qd), String(n)]),
      );
      rows.push([`QD${qd}`, m.a.toFixed(0), m.b.toFixed(0), m.ratio.toFixed(2)]);
    }
    console.log(`4 KiB reads, IOPS (medians of ${rounds} back-to-back pairs of ${n}; ÷ = median of the pair ratios); target vhostkit ÷ qsd >= 1.0`);
    table(["depth", "vhostkit ram-blk", "qsd null-co", "÷ qsd"], rows);
  } finally {
    await qsd.stop();
    dev.kill("SIGTERM");
    rmSync(dir, { recursive: true, force: true });
  }
}
