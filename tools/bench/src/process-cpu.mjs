// CPU time of a process, for benchmarks that report CPU per request; runtime-neutral (Bun, Node).
import { readdirSync, readFileSync } from "node:fs";

/** CPU time (ns) process `pid` has used so far over all its threads (/proc/<pid>/task/<tid>/schedstat). */
export function processCpuNs(pid) {
  let ns = 0;
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${t}/schedstat`, "utf8").split(" ")[0]);
    } catch {
      // a thread that ended meanwhile
    }
  }
  return ns;
}
