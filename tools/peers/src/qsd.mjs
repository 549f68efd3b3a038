// Runtime-neutral (Node and Bun) launcher for qemu-storage-daemon exporting vhost-user-blk.
// Types live in qsd.d.mts; src/qsd.ts re-exports them for TypeScript callers.
import { spawn } from "node:child_process";
import { mkdtemp, rm, stat, truncate, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { peerCommand } from "./peers.mjs";

/** Try one connect to a unix socket; resolves true when accepted (connection is closed at once). */
function tryConnect(path) {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

function waitTick(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * The argv that starts qsd: `command`, else `binary`, else the fetched peer set `peer` (default
 * `bookworm`, QEMU 7.2). An unfetched set throws PeerMissingError at once.
 */
function qsdCommand(opts) {
  if (opts.command !== undefined) return [...opts.command];
  if (opts.binary !== undefined) return [opts.binary];
  return peerCommand(opts.peer ?? "bookworm", "qemu-storage-daemon");
}

/**
 * Start qemu-storage-daemon with a vhost-user-blk export on a fresh temp socket, or on
 * `opts.socketPath` (the caller's; a stale socket file there is replaced by qsd) with the disk in
 * `opts.image` (the caller's; neither is removed by `stop()`), so a killed daemon can be started
 * again on the same socket and disk.
 * @param {import("./qsd.d.mts").QsdOptions} [opts]
 * @returns {Promise<import("./qsd.d.mts").QsdHandle>}
 */
export async function startQsd(opts = {}) {
  const backend = opts.backend ?? "file";
  const sizeBytes = opts.sizeBytes ?? 1024 * 1024;
  const timeoutMs = opts.readyTimeoutMs ?? 10_000;
  const [program, ...prefix] = qsdCommand(opts);
  const dir = await mkdtemp(join(tmpdir(), "vhostkit-qsd-"));
  const socketPath = opts.socketPath ?? join(dir, "vhost-user-blk.sock");
  let blockdev;
  if (opts.image !== undefined) {
    blockdev = `driver=file,node-name=disk0,filename=${opts.image}`;
  } else if (backend === "null-co") {
    blockdev = `driver=null-co,node-name=disk0,size=${sizeBytes}`;
  } else {
    const image = join(dir, "disk.raw");
    await writeFile(image, "");
    await truncate(image, sizeBytes);
    blockdev = `driver=file,node-name=disk0,filename=${image}`;
  }
  let exportArg = `type=vhost-user-blk,id=export0,node-name=disk0,addr.type=unix,addr.path=${socketPath}`;
  exportArg += `,writable=${opts.writable === false ? "off" : "on"}`;
  if (opts.numQueues !== undefined) exportArg += `,num-queues=${opts.numQueues}`;
  if (opts.logicalBlockSize !== undefined) exportArg += `,logical-block-size=${opts.logicalBlockSize}`;
  const args = ["--blockdev", blockdev, "--export", exportArg];
  const child = spawn(program, [...prefix, ...args], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (d) => {
    stderr += d;
  });
  let exited = null;
  const exitPromise = new Promise((resolve) => {
    child.once("exit", (code, signal) => {
      exited = { code, signal };
      resolve(exited);
    });
    child.once("error", (err) => {
      exited = { code: null, signal: null, error: err };
      resolve(exited);
    });
  });
  const stop = async () => {
    if (exited === null) {
      child.kill("SIGTERM");
      const t = setTimeout(() => {
        if (exited === null) child.kill("SIGKILL");
      }, 5000);
      await exitPromise;
      clearTimeout(t);
    }
    await rm(dir, { recursive: true, force: true });
    return exited;
  };
  // Readiness: the socket file exists and a connect is accepted, bounded by timeoutMs.
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (exited !== null) {
      await rm(dir, { recursive: true, force: true });
      throw new Error(`qemu-storage-daemon exited before ready (code ${exited.code}): ${stderr.trim()}`);
    }
    const exists = await stat(socketPath).then(
      () => true,
      () => false,
    );
    if (exists && (await tryConnect(socketPath))) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`qemu-storage-daemon not ready after ${timeoutMs} ms: ${stderr.trim()}`);
    }
    await waitTick(20);
  }
  const kill = async () => {
    if (exited === null) {
      child.kill("SIGKILL");
      await exitPromise;
    }
    await rm(dir, { recursive: true, force: true });
    return exited;
  };
  return { socketPath, dir, pid: child.pid ?? -1, args, stderr: () => stderr, stop, kill };
}

/** `qemu-storage-daemon --version` first line (same choice of qsd as startQsd). */
export async function qsdVersion(opts = {}) {
  const [program, ...prefix] = qsdCommand(opts);
  return new Promise((resolve, reject) => {
    const c = spawn(program, [...prefix, "--version"], { stdio: ["ignore", "pipe", "ignore"] });
    let out = "";
    c.stdout.setEncoding("utf8");
    c.stdout.on("data", (d) => (out += d));
    c.once("error", reject);
    c.once("exit", () => resolve(out.split("\n")[0] ?? ""));
  });
}
