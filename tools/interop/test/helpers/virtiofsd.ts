/**
 * virtiofsd 7.2 (QEMU's C daemon, Debian 12) and 1.14 (Rust, Debian unstable) started on a
 * directory, with the flags that work for whoever runs the test.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { peerCommand } from "@vhostkit/peers/peers";
import { withDeadline } from "./processes.js";

/** Which virtiofsd: QEMU 7.2's C daemon or the Rust daemon 1.14. */
export type VirtiofsdKind = "c-7.2" | "rust-1.14";

/** True when this process runs as root (virtiofsd 7.2 needs root: see {@link virtiofsdArgs}). */
export function runningAsRoot(): boolean {
  return process.getuid?.() === 0;
}

/**
 * The argv of a virtiofsd serving `shared` on `socket`.
 * - 7.2 (C) has no unprivileged mode: it drops supplementary groups with setgroups(2) and
 *   sandboxes with chroot(2) or mount/pid/net namespaces, all of which need root. As root the test
 *   uses `-o sandbox=chroot` (no mount namespace to set up inside a container).
 * - 1.14 (Rust) runs as any user with `--sandbox=none`; `--inode-file-handles=never` because an
 *   ordinary user may not open file handles (it would only warn and fall back).
 */
export function virtiofsdArgs(kind: VirtiofsdKind, shared: string, socket: string): string[] {
  if (kind === "c-7.2") return [...peerCommand("bookworm", "virtiofsd"), `--socket-path=${socket}`, "-o", `source=${shared}`, "-o", "sandbox=chroot"];
  return [...peerCommand("sid", "virtiofsd"), `--socket-path=${socket}`, "--shared-dir", shared, "--sandbox=none", "--inode-file-handles=never"];
}

/** A running virtiofsd. Both daemons serve one front-end and exit when it disconnects. */
export interface Virtiofsd {
  readonly socket: string;
  readonly child: ChildProcess;
  /** Everything it wrote on stderr so far. */
  readonly stderr: () => string;
  /** Resolves with the exit code (or signal name) once it ended. */
  readonly exited: Promise<number | string | null>;
  /** SIGTERM, SIGKILL after 5 s, and wait. */
  stop(): Promise<void>;
}

/**
 * Starts virtiofsd on `shared` with its socket in `dir` (a fresh name per call) and resolves once
 * it logs that it waits for a connection (both versions print "Waiting for vhost-user socket
 * connection"), within `deadlineMs`. `extraArgs` go after the usual ones (e.g. `--tag NAME`).
 */
export async function startVirtiofsd(
  kind: VirtiofsdKind,
  shared: string,
  dir: string,
  deadlineMs = 20_000,
  extraArgs: readonly string[] = [],
): Promise<Virtiofsd> {
  const socket = join(dir, `${kind}-${Math.random().toString(36).slice(2, 8)}.sock`);
  const [program, ...args] = [...virtiofsdArgs(kind, shared, socket), ...extraArgs];
  const child = spawn(program as string, args, { stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  const kill = () => child.kill("SIGKILL");
  process.once("exit", kill);
  const exited = new Promise<number | string | null>((resolve) => {
    child.once("exit", (code, signal) => {
      process.off("exit", kill);
      resolve(code ?? signal);
    });
    child.once("error", () => resolve(null));
  });
  const ready = new Promise<void>((resolve, reject) => {
    const look = (b: Buffer) => {
      stderr += b.toString();
      if (stderr.includes("Waiting for vhost-user socket connection")) resolve();
    };
    child.stdout!.on("data", look);
    child.stderr!.on("data", look);
    void exited.then((code) => reject(new Error(`virtiofsd ${kind} exited (${code}) before it listened:\n${stderr}`)));
  });
  const handle: Virtiofsd = {
    socket,
    child,
    stderr: () => stderr,
    exited,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        const t = setTimeout(() => child.kill("SIGKILL"), 5000);
        await exited;
        clearTimeout(t);
      }
    },
  };
  try {
    await withDeadline(ready, deadlineMs, `virtiofsd ${kind} listening on ${socket}`);
  } catch (err) {
    await handle.stop();
    throw err;
  }
  return handle;
}
