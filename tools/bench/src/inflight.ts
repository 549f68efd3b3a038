/**
 * The cost of inflight I/O tracking (issue 14, docs/protocol.md#inflight-tracking-and-reconnect) in
 * the blk benchmark: the RAM blk example device, 4 KiB reads on split and on packed rings (issue 15:
 * the packed region records every descriptor, not only a flag) at queue depth 1 and 32, driven by
 * the same vhostkit front-end with INFLIGHT_SHMFD acknowledged (the back-end records and releases
 * every chain in the shared area) and not acknowledged (untracked), in back-to-back pairs with the
 * order alternating, on one device process. Prints both medians, the median of the pair ratios and
 * their spread (lowest and highest ratio); goal: tracking within 10 % at QD32, on either layout.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startDevice } from "./backend.js";
import { median, note, runNumber, size, table } from "./harness.js";

/** Run the inflight benchmark and print its table. */
export async function run(): Promise<void> {
  const n = Number(process.env["VHOSTKIT_BENCH_IOS"] ?? size(20000, 200));
  const rounds = Number(process.env["VHOSTKIT_BENCH_ROUNDS"] ?? size(7, 1));
  const client = join(import.meta.dir, "backend-blk-client.mjs");
  const dir = mkdtempSync(join(tmpdir(), "vhostkit-bench-inflight-"));
  const device = await startDevice(dir, "ram-blk", []);
  try {
    const rows: (string | number)[][] = [];
    for (const [layout, qd] of [
      ["split", 1],
      ["split", 32],
      ["packed", 1],
      ["packed", 32],
    ] as const) {
      const on: number[] = [];
      const off: number[] = [];
      const ratios: number[] = [];
      for (let i = 0; i < rounds; i++) {
        const order = i % 2 === 0 ? (["inflight-on", "inflight-off"] as const) : (["inflight-off", "inflight-on"] as const);
        const got: Record<string, number> = {};
        for (const mode of order) got[mode] = runNumber(process.execPath, [client, device.socket, String(qd), String(n), mode, layout]);
        on.push(got["inflight-on"] as number);
        off.push(got["inflight-off"] as number);
        ratios.push((got["inflight-on"] as number) / (got["inflight-off"] as number));
      }
      const lo = Math.min(...ratios);
      const hi = Math.max(...ratios);
      rows.push([layout, `QD${qd}`, median(on).toFixed(0), median(off).toFixed(0), median(ratios).toFixed(3), `${lo.toFixed(3)}–${hi.toFixed(3)}`]);
    }
    note(`4 KiB reads on the RAM blk device, IOPS (medians of ${rounds} back-to-back pairs of ${n}); goal: tracking on ÷ off >= 0.90 at QD32`);
    table(["ring", "depth", "inflight on", "inflight off", "on ÷ off (median)", "on ÷ off (lowest–highest)"], rows);
  } finally {
    device.child.kill("SIGTERM");
    rmSync(dir, { recursive: true, force: true });
  }
}
