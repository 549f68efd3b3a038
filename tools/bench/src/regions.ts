/**
 * Regions benchmark (issue 4): SHMEM_MAP + SHMEM_UNMAP pairs per second for 4 KiB and 2 MiB
 * mappings through the public `@vhostkit/regions` API (DeviceSharedMemory.map/unmap into a
 * PROT_NONE reservation), under Bun and Node, against a C program making the same two mmap calls
 * (tools/bench/c/regions-mmap.c), interleaved in the same run. Prints vhostkit ÷ C.
 *
 * The API path also makes three more system calls per pair than the two mmaps (the caller's dup
 * standing in for the received fd, fstat for the size check, close at unmap); the second C column
 * makes them too, so both ratios are shown.
 */
import { join } from "node:path";
import { compileC, interleave, note, root, runNumber, size, table } from "./harness.js";

/** Run the regions benchmark and print its table. */
export async function run(): Promise<void> {
  const c = compileC("regions-mmap");
  const script = join(import.meta.dir, "regions-node.mjs");
  const n = Number(process.env.VHOSTKIT_BENCH_PAIRS ?? size(20000, 200));
  const rounds = size(5, 1);
  const rows: (string | number)[][] = [];
  for (const [label, len] of [
    ["4 KiB", "4096"],
    ["2 MiB", "2097152"],
  ] as const) {
    const m = interleave(rounds, {
      c: () => runNumber(c, [len, String(n)]),
      cFull: () => runNumber(c, [len, String(n), "full"]),
      bun: () => runNumber(process.execPath, [script, len, String(n)], root),
      node: () => runNumber("node", [script, len, String(n)], root),
    });
    const pairsPerSec = (ns: number | undefined): string => (1e9 / (ns ?? 1)).toFixed(0);
    const ratio = (k: string, base: string): string => ((m[k] ?? 0) / (m[base] ?? 1)).toFixed(2);
    rows.push([
      label,
      pairsPerSec(m.c),
      pairsPerSec(m.cFull),
      pairsPerSec(m.bun),
      ratio("bun", "c"),
      ratio("bun", "cFull"),
      pairsPerSec(m.node),
      ratio("node", "c"),
      ratio("node", "cFull"),
    ]);
  }
  note(`map+unmap pairs/s (median of ${rounds} interleaved rounds of ${n} pairs); ratio = time per pair ÷ C (koffi spike: ≈ 1.4x the two mmaps)`);
  note("C = the two mmap calls; C+ = the same plus dup, fstat, fcntl(F_GET_SEALS) and close, the full set of system calls of the API path");
  table(["mapping", "C", "C+", "Bun", "÷C", "÷C+", "Node", "÷C", "÷C+"], rows);
}
