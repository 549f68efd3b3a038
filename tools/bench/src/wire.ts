/**
 * Wire benchmark (issue 2): encode + decode of whole frames for a realistic mix — SET_VRING_ADDR,
 * SET_MEM_TABLE with 8 regions, BACKEND_SHMEM_MAP, the 2056-byte GET_SHMEM_CONFIG reply — through
 * @vhostkit/wire (built dist/) on Bun and on Node, against a bare hand-written DataView
 * encoder/decoder of the same bytes (no validation), interleaved in the same run. Prints messages/s
 * and wire ÷ baseline (time ratio: 1.00 = as fast as the bare DataView code).
 */
import { join } from "node:path";
import { interleave, note, root, runNumber, size, table } from "./harness.js";

const MESSAGES = ["SET_VRING_ADDR", "SET_MEM_TABLE(8)", "SHMEM_MAP", "GET_SHMEM_CONFIG reply", "mix"] as const;

/** Run the wire benchmark and print its table. */
export async function run(): Promise<void> {
  const script = join(import.meta.dir, "wire-node.mjs");
  const n = Number(process.env.VHOSTKIT_BENCH_WIRE ?? size(200000, 2000));
  const rounds = Number(process.env.VHOSTKIT_BENCH_ROUNDS ?? size(3, 1));
  const rows: (string | number)[][] = [];
  const rate = (ns: number): string => (ns > 0 ? Math.round(1e9 / ns).toLocaleString("en-US") : "-");
  for (const msg of MESSAGES) {
    const iters = msg === "GET_SHMEM_CONFIG reply" || msg === "mix" ? Math.max(1, Math.floor(n / 4)) : n;
    const m = interleave(rounds, {
      bunWire: () => runNumber(process.execPath, [script, "wire", msg, String(iters)], root),
      bunBase: () => runNumber(process.execPath, [script, "baseline", msg, String(iters)], root),
      nodeWire: () => runNumber("node", [script, "wire", msg, String(iters)], root),
      nodeBase: () => runNumber("node", [script, "baseline", msg, String(iters)], root),
    });
    const ratio = (a: string, b: string): string => ((m[a] ?? 0) / (m[b] || 1)).toFixed(2);
    rows.push([
      msg,
      rate(m.bunWire ?? 0),
      rate(m.bunBase ?? 0),
      ratio("bunWire", "bunBase"),
      rate(m.nodeWire ?? 0),
      rate(m.nodeBase ?? 0),
      ratio("nodeWire", "nodeBase"),
    ]);
  }
  note(`encode + decode of one whole frame, messages/s (median of ${rounds} interleaved rounds); ÷base = time ratio wire ÷ bare DataView`);
  table(["message", "Bun wire", "Bun base", "÷base", "Node wire", "Node base", "÷base"], rows);
}
