/** Runs the `vhost-user-device` CLI as a subprocess, for the tests. */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

// The CLI is a Bun program (bin: src/main.ts). Under Bun it runs with this runtime; under the Node
// leg it runs with the repository's own Bun (a devDependency), so the same assertions hold.
const MAIN = fileURLToPath(new URL("../src/main.ts", import.meta.url));
const BUN = "bun" in process.versions ? process.execPath : fileURLToPath(new URL("../../../node_modules/.bin/bun", import.meta.url));

/** Exit code and captured output of one CLI run. */
export interface CliRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `vhost-user-device ...args` and waits for it to exit. */
export function cli(...args: string[]): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(BUN, [MAIN, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    child.once("error", reject);
    child.once("close", (code) => resolve({ code, stdout, stderr }));
  });
}
