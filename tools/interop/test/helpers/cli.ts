/**
 * Runs the `vhost-user-device` CLI (apps/device) as a child process without blocking the event
 * loop (a peer whose stderr pipe this process drains must keep running meanwhile).
 */
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { withDeadline } from "./processes.js";

/** The repository root: the first directory up from this module that holds the CLI (this file may run bundled one level up). */
function repoRoot(): string {
  for (let d = dirname(fileURLToPath(import.meta.url)); d !== dirname(d); d = dirname(d)) if (existsSync(join(d, "apps/device/src/main.ts"))) return d;
  throw new Error("apps/device/src/main.ts not found above this module");
}

const ROOT = repoRoot();
// The CLI is a Bun program: under Node it runs with the repository's own Bun.
const BUN = "bun" in process.versions ? process.execPath : join(ROOT, "node_modules/.bin/bun");
const MAIN = join(ROOT, "apps/device/src/main.ts");

/** Exit code and output of one CLI run; stdout as bytes too (`fs cat` writes raw file bytes). */
export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stdoutBytes: Buffer;
  readonly stderr: string;
}

/** A started CLI run: its pid and its result. */
export interface CliRun {
  readonly pid: number | undefined;
  readonly result: Promise<CliResult>;
  /** Writes `data` to its stdin and closes it (for commands that read stdin). */
  readonly input: (data: Uint8Array) => void;
  /** Resolves once its stderr so far matches `re` (rejects if it exits first). */
  readonly stderrMatch: (re: RegExp) => Promise<string>;
  /** SIGKILL if still running. */
  readonly kill: () => void;
}

/** Starts `vhost-user-device ...args`; stdin is a pipe. */
export function startCli(args: readonly string[]): CliRun {
  const child = spawn(BUN, [MAIN, ...args], { stdio: ["pipe", "pipe", "pipe"] });
  const out: Buffer[] = [];
  let stderr = "";
  let watchers: { readonly re: RegExp; readonly resolve: (s: string) => void }[] = [];
  child.stdout.on("data", (b: Buffer) => out.push(b));
  child.stderr.on("data", (b: Buffer) => {
    stderr += b.toString();
    watchers = watchers.filter((w) => (w.re.test(stderr) ? (w.resolve(stderr), false) : true));
  });
  child.stdin.on("error", () => undefined); // the CLI may exit before reading all of it
  const kill = () => child.kill("SIGKILL");
  process.once("exit", kill);
  const result = new Promise<CliResult>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code) => {
      process.off("exit", kill);
      const bytes = Buffer.concat(out);
      resolve({ code, stdout: bytes.toString("utf8"), stdoutBytes: bytes, stderr });
    });
  });
  return {
    pid: child.pid,
    result,
    input: (data) => {
      child.stdin.end(data);
    },
    stderrMatch: (re) => {
      if (re.test(stderr)) return Promise.resolve(stderr);
      return Promise.race([
        new Promise<string>((resolve) => watchers.push({ re, resolve })),
        result.then((r) => Promise.reject(new Error(`vhost-user-device exited (${r.code}) before its stderr matched ${re}: ${r.stderr}`))),
      ]);
    },
    kill: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    },
  };
}

/** Runs `vhost-user-device ...args` with stdin closed and waits for it, at most `deadlineMs`. */
export async function cli(args: readonly string[], deadlineMs = 30_000): Promise<CliResult> {
  const run = startCli(args);
  run.input(new Uint8Array(0));
  try {
    return await withDeadline(run.result, deadlineMs, `vhost-user-device ${args.join(" ")}`);
  } finally {
    run.kill();
  }
}
