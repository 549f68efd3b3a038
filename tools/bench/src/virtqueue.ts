/**
 * Virtqueue benchmark (issue 5): device-side pop + push of 1- and 3-descriptor chains at queue size
 * 256 over mmapped memfd memory, through the public `SplitQueue` API (virtqueue-node.mjs, run by
 * Bun and by Node on the built packages) against a bare C loop doing the same ring operations
 * (tools/bench/c/virtqueue-ring.c, gcc -O2), interleaved in the same run. Prints library ÷ C.
 */
import { join } from "node:path";
import { compileC, interleave, root, runNumber, table } from "./harness.js";

/** Run the virtqueue benchmark and print its table. */
export async function run(): Promise<void> {
  const c = compileC("virtqueue-ring");
  const script = join(import.meta.dir, "virtqueue-node.mjs");
  const ms = String(process.env.VHOSTKIT_BENCH_MS ?? 400);
  const rounds = Number(process.env.VHOSTKIT_BENCH_ROUNDS ?? 5);
  const rows: (string | number)[][] = [];
  for (const per of ["1", "3"]) {
    const m = interleave(rounds, {
      c: () => runNumber(c, [per, ms]),
      bun: () => runNumber(process.execPath, [script, per, ms], root),
      node: () => runNumber("node", [script, per, ms], root),
    });
    const base = m.c ?? 1;
    const cell = (k: string): string[] => [((m[k] ?? 0) / 1e6).toFixed(1), ((m[k] ?? 0) / base).toFixed(2)];
    rows.push([`${per}-descriptor`, ((m.c ?? 0) / 1e6).toFixed(1), ...cell("bun"), ...cell("node")]);
  }
  console.log(`device pop + push, queue size 256, M chains/s (median of ${rounds} interleaved rounds of ${ms} ms); target Bun ÷ C >= 0.25`);
  table(["chains", "C", "Bun", "÷C", "Node", "÷C"], rows);
}
