/**
 * vhostkit-gpu in its own process (bin/vhostkit-gpu.mjs run with process.execPath: Bun runs the
 * sources, Node the dist build) on a socket in a fresh temp dir, its `--events` JSON lines as events
 * to await. Built on the device CLI tests' {@link LineProcess}: output piped, killed on exit, and a
 * wait for an event rejects as soon as the process exits without it.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { LineProcess } from "../../../device/test/helpers/line-process.js";

/**
 * The app's directory, cut from this module's URL at `/test/`: under Bun this file runs from
 * test/helpers/, but the Node leg bundles it into the test file (test/.<name>.node.mjs).
 */
export const APP = fileURLToPath(import.meta.url.slice(0, import.meta.url.lastIndexOf("/test/") + 1));
const BIN = join(APP, "bin", "vhostkit-gpu.mjs");

/** Under Node the launcher runs dist/: build it (incremental, a no-op when up to date). */
export function ensureBuilt(): void {
  if (typeof (globalThis as { Bun?: unknown }).Bun !== "undefined") return;
  const r = spawnSync(join(APP, "..", "..", "node_modules", ".bin", "tsc"), ["-b", APP], { encoding: "utf8" });
  assert.equal(r.status, 0, `tsc -b apps/gpu-backend: ${r.stdout}${r.stderr}`);
}

/** One `--events` line. */
export type GpuEvent = Record<string, unknown>;

/** A running vhostkit-gpu. */
export class GpuProcess {
  /** Its temp dir (socket, screenshots); removed by {@link GpuProcess.stop}. */
  readonly dir: string;
  /** Its vhost-user socket. */
  readonly socket: string;
  readonly #proc: LineProcess;

  /** Starts vhostkit-gpu with `args` on `<dir>/<name>.sock`, screenshots in `<dir>/<name>-shots`. */
  constructor(args: readonly string[] = [], name = "gpu", dir = mkdtempSync(join(tmpdir(), "vhostkit-gpu-"))) {
    this.dir = dir;
    this.socket = join(dir, `${name}.sock`);
    this.#proc = new LineProcess(process.execPath, [BIN, "--socket", this.socket, "--screenshot-dir", join(dir, `${name}-shots`), "--events", ...args]);
  }

  /** Every event so far. */
  get events(): GpuEvent[] {
    return this.#proc.lines.map((l) => JSON.parse(l) as GpuEvent);
  }

  /** True while the process runs. */
  get running(): boolean {
    return !this.#proc.ended;
  }

  /** The first event, already printed or still to come, that `match` accepts; rejects if the process exits first. */
  async event(match: (e: GpuEvent) => boolean): Promise<GpuEvent> {
    return JSON.parse(await this.#proc.line((l) => match(JSON.parse(l) as GpuEvent))) as GpuEvent;
  }

  /** The `listening` event (the socket accepts connections). */
  listening(): Promise<GpuEvent> {
    return this.event((e) => e["event"] === "listening");
  }

  /** SIGTERM, wait for the exit, remove the temp dir unless `keepDir`. Idempotent. */
  async stop(keepDir = false): Promise<void> {
    await this.#proc.stop();
    if (!keepDir) rmSync(this.dir, { recursive: true, force: true });
  }
}
