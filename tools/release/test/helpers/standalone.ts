/**
 * The standalone executables of the apps (`src/build-binaries.ts`), run the way a user without
 * Node or Bun runs them: from a directory outside the workspace, with a `PATH` that holds nothing
 * but `sh`, so neither a runtime nor a `node_modules/.bin` can be found, and with the process
 * checked to be the executable itself, starting nothing.
 */
import { mkdirSync, readFileSync, readdirSync, realpathSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { type Deadline, LongRunning, run } from "./processes.js";

/** What one compiled `vhost-user-device probe --json` and both `--version`s said. */
export interface CompiledRun {
  /** The probe's JSON object. */
  readonly probe: Record<string, unknown>;
  /** The `listening` line of `vhostkit-gpu`. */
  readonly listening: Record<string, unknown>;
  /** `vhost-user-device --version`, line by line. */
  readonly deviceVersion: readonly string[];
  /** `vhostkit-gpu --version`, line by line. */
  readonly gpuVersion: readonly string[];
}

/** `dir`, created, holding only a link `sh` → `/bin/sh`: a PATH with no Node, Bun or node_modules on it. */
export function shOnlyPath(dir: string): string {
  mkdirSync(dir, { recursive: true });
  symlinkSync("/bin/sh", join(dir, "sh"));
  return dir;
}

/** The processes whose parent is `pid` (from `/proc/<pid>/stat`). */
export function childProcesses(pid: number): number[] {
  const children: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(join("/proc", entry, "stat"), "utf8");
    } catch {
      continue; // ended meanwhile
    }
    // pid (comm) state ppid ...: comm may hold spaces and parentheses, so split after the last ')'.
    const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
    if (ppid === pid) children.push(Number(entry));
  }
  return children;
}

/** A compiled back-end and the probe to run against it, each an argv whose first word is the executable's absolute path. */
export interface CompiledPair {
  /** `vhostkit-gpu-<target> --socket S ...`. */
  readonly gpu: readonly string[];
  /** `vhost-user-device-<target> probe --socket S --json`. */
  readonly probe: readonly string[];
}

/**
 * Starts the compiled back-end, runs the compiled probe against it once it listens, and asks both
 * executables for `--version`; every process runs in `cwd` with only `PATH` (`pathDir`, see
 * {@link shOnlyPath}) and `HOME` in its environment. Throws unless the back-end's process is the
 * executable itself (`/proc/<pid>/exe`) with no child process. The back-end is stopped before this
 * returns.
 */
export async function probeCompiled(pair: CompiledPair, cwd: string, pathDir: string, deadline: Deadline): Promise<CompiledRun> {
  const env = { PATH: pathDir, HOME: cwd };
  const [gpuBin = "", ...gpuArgs] = pair.gpu;
  const [device = "", ...probeArgs] = pair.probe;
  const gpu = new LongRunning(gpuBin, gpuArgs, { cwd, env });
  try {
    const listening = await gpu.event("listening", deadline);
    const pid = gpu.pid ?? -1;
    const exe = realpathSync(`/proc/${pid}/exe`);
    if (exe !== realpathSync(gpuBin)) throw new Error(`vhostkit-gpu runs as ${exe}, not as the executable ${gpuBin}`);
    const children = childProcesses(pid);
    if (children.length > 0) throw new Error(`vhostkit-gpu started processes ${children.join(", ")}`);
    const probe = JSON.parse((await run(device, probeArgs, { cwd, env, deadline })).stdout) as Record<string, unknown>;
    const lines = async (bin: string): Promise<string[]> => (await run(bin, ["--version"], { cwd, env, deadline })).stdout.trim().split("\n");
    return { probe, listening, deviceVersion: await lines(device), gpuVersion: await lines(gpuBin) };
  } finally {
    await gpu.stop();
  }
}
