/**
 * The RAM blk example of @vhostkit/backend (with `--file`, so its disk survives a kill) on a fixed
 * socket, in its own process, killed and started again at will: the back-end of the reconnect tests.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

/**
 * The package directory (`packages/frontend/`): found from this file's URL up to `/test/`, since the
 * Node leg runs a bundle of the test file written next to it in `test/`, not this file.
 */
const PACKAGE = import.meta.url.slice(0, import.meta.url.lastIndexOf("/test/") + 1);
const RAM_BLK = fileURLToPath(new URL("../backend/examples/ram-blk.mjs", PACKAGE));

/** The RAM blk example on a fixed socket and disk file, killed and started again at will. */
export class RestartableBlk {
  readonly dir = mkdtempSync(join(tmpdir(), "vhostkit-reconnect-"));
  readonly socket = join(this.dir, "blk.sock");
  readonly lines: string[] = [];
  #child: ChildProcess | undefined;

  /** More options of the example (`--latency-ms 1`: each request takes a while, so a kill finds many in flight). */
  readonly args: readonly string[];

  constructor(args: readonly string[] = []) {
    this.args = args;
  }

  /** Starts a device process; resolves once it listens. */
  async start(): Promise<void> {
    const child = spawn(
      process.execPath,
      [RAM_BLK, "--socket", this.socket, "--size-mib", "1", "--file", join(this.dir, "disk.img"), "--events", ...this.args],
      {
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    this.#child = child;
    const kill = (): boolean => child.kill("SIGKILL");
    process.once("exit", kill);
    child.once("exit", () => process.off("exit", kill));
    child.stderr!.resume();
    await new Promise<void>((resolve, reject) => {
      createInterface({ input: child.stdout! }).on("line", (l) => {
        this.lines.push(l);
        if (l.startsWith("listening")) resolve();
      });
      child.once("exit", (code) => reject(new Error(`ram-blk exited (${code}) before listening`)));
    });
  }

  /** Kills the device process with `signal` and waits for its exit. */
  async kill(signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    const c = this.#child;
    if (c === undefined || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise((r) => c.once("exit", r));
    c.kill(signal);
    await exited;
  }

  async dispose(): Promise<void> {
    await this.kill("SIGTERM");
    rmSync(this.dir, { recursive: true, force: true });
  }
}
