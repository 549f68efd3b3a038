/** The RAM blk example device (packages/backend/examples) as a real second process, for tests. */
import { spawn } from "node:child_process";
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

/** A running RAM blk device. */
export interface RamBlkProcess {
  /** Its listening socket. */
  readonly socket: string;
  /** What it wrote to stderr so far. */
  readonly stderr: string[];
  /** Stops it and waits until its pipes closed (later test files count this process's fds). */
  stop(): Promise<void>;
}

/**
 * Starts the RAM blk device with `args` (e.g. `--size-mib 1`); resolves once it listens. Its stdout
 * and stderr are piped, and it is killed if this process exits first.
 */
export async function startRamBlk(args: readonly string[] = []): Promise<RamBlkProcess> {
  const dir = mkdtempSync(join(tmpdir(), "vhostkit-ram-blk-"));
  const socket = join(dir, "blk.sock");
  const child = spawn(process.execPath, [RAM_BLK, "--socket", socket, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  const stderr: string[] = [];
  child.stderr?.on("data", (b: Buffer) => stderr.push(b.toString()));
  const kill = (): void => void child.kill("SIGKILL");
  process.once("exit", kill);
  child.once("exit", () => process.off("exit", kill));
  const closed = new Promise((r) => child.once("close", r));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
    await closed;
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await new Promise<void>((resolve, reject) => {
      createInterface({ input: child.stdout! }).on("line", (l) => l.startsWith("listening") && resolve());
      child.once("exit", (code) => reject(new Error(`ram-blk exited (${code}) before listening: ${stderr.join("")}`)));
    });
  } catch (e) {
    await stop();
    throw e;
  }
  return { socket, stderr, stop };
}
