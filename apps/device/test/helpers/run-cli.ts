/** Runs the `vhost-user-device` CLI as a subprocess, for the tests. */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

// The app's directory, cut from this module's URL at `/test/`: under Bun this file runs from
// test/helpers/, but the Node leg bundles it into the test file (test/.<name>.node.mjs).
const APP = import.meta.url.slice(0, import.meta.url.lastIndexOf("/test/") + 1);
// The CLI is a Bun program (bin: src/main.ts). Under Bun it runs with this runtime; under the Node
// leg it runs with the repository's own Bun (a devDependency), so the same assertions hold.
const MAIN = fileURLToPath(new URL("src/main.ts", APP));
const BUN = "bun" in process.versions ? process.execPath : fileURLToPath(new URL("../../node_modules/.bin/bun", APP));

/** The command and arguments that run `vhost-user-device ...args` (for a long-running child). */
export function cliCommand(...args: string[]): [string, string[]] {
  return [BUN, [MAIN, ...args]];
}

/** Exit code and captured output of one CLI run. */
export interface CliRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** A CLI run that has not exited after this long is killed (a safety net for a hung peer, not a wait). */
const KILL_AFTER_MS = 60_000;

/** Runs `vhost-user-device ...args` and waits for it to exit. */
export function cli(...args: string[]): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(BUN, [MAIN, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    const hung = setTimeout(() => {
      stderr += `\n[vhost-user-device ${args.join(" ")}: killed after ${KILL_AFTER_MS} ms]`;
      child.kill("SIGKILL");
    }, KILL_AFTER_MS);
    hung.unref();
    child.once("error", (err) => (clearTimeout(hung), reject(err)));
    child.once("close", (code) => (clearTimeout(hung), resolve({ code, stdout, stderr })));
  });
}
