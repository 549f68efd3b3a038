/**
 * Virtqueue benchmark (issues 5 and 15): split and packed rings, device side (pop + push) and driver
 * side (add + get), 1- and 3-descriptor chains, a full ring's worth per round over mmapped memfd
 * memory, through the public API (virtqueue-node.mjs, run by Bun and by Node on the built packages)
 * against a bare C loop doing the same ring operations (tools/bench/c/virtqueue-ring.c, gcc -O2),
 * interleaved in the same run. Prints each median, the spread of the rounds and library ÷ C.
 */
import { join } from "node:path";
import { compileC, median, note, root, runNumber, size, table } from "./harness.js";

/** The benchmark's modes, in the order printed: ring layout and side. */
const MODES = ["split-device", "packed-device", "split-driver", "packed-driver"] as const;

/** Median and spread (min–max) of `xs` in millions, one decimal. */
function cell(xs: readonly number[]): string {
  const m = (v: number): string => (v / 1e6).toFixed(1);
  return `${m(median([...xs]))} (${m(Math.min(...xs))}–${m(Math.max(...xs))})`;
}

/** Run the virtqueue benchmark and print its table. */
export async function run(): Promise<void> {
  const c = compileC("virtqueue-ring");
  const script = join(import.meta.dir, "virtqueue-node.mjs");
  const ms = String(process.env.VHOSTKIT_BENCH_MS ?? size(400, 20));
  const rounds = Number(process.env.VHOSTKIT_BENCH_ROUNDS ?? size(5, 1));
  const wanted = (process.env.VHOSTKIT_BENCH_VQ_MODES ?? MODES.join(",")).split(",");
  const rows: string[][] = [];
  for (const mode of MODES.filter((x) => wanted.includes(x))) {
    for (const per of ["1", "3"]) {
      // Interleaved (C, Bun, Node, C, Bun, Node, ...) so that machine noise hits all three alike.
      const s: Record<"c" | "bun" | "node", number[]> = { c: [], bun: [], node: [] };
      const ratio: Record<"bun" | "node", number[]> = { bun: [], node: [] };
      for (let i = 0; i < rounds; i++) {
        const cv = runNumber(c, [per, ms, mode]);
        const bv = runNumber(process.execPath, [script, per, ms, mode], root);
        const nv = runNumber("node", [script, per, ms, mode], root);
        s.c.push(cv);
        s.bun.push(bv);
        s.node.push(nv);
        ratio.bun.push(bv / cv);
        ratio.node.push(nv / cv);
      }
      const r = (xs: number[]): string => `${median(xs).toFixed(2)} (${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)})`;
      rows.push([mode, per, cell(s.c), cell(s.bun), r(ratio.bun), cell(s.node), r(ratio.node)]);
    }
  }
  note(`M chains/s, median (min–max) of ${rounds} interleaved rounds of ${ms} ms; ÷C is the median of the per-round ratios; target Bun ÷ C >= 0.25`);
  table(["mode", "descs", "C", "Bun", "Bun÷C", "Node", "Node÷C"], rows);
}
