/**
 * vhost-device-vsock 0.3 (rust-vmm, Debian unstable) with a Unix-socket host side, and the host
 * end of its hybrid protocol: `CONNECT <port>\n` on `uds` reaches a guest listener, a guest's
 * connection to port P reaches the listener at `<uds>_P` (docs/virtio-vsock.md#unix-socket-host-side).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { connect as netConnect, type Socket } from "node:net";
import { join } from "node:path";
import { connect } from "@vhostkit/transport";
import { peerCommand } from "@vhostkit/peers/peers";
import { withDeadline } from "./processes.js";

/** A running vhost-device-vsock. It serves one front-end at a time and waits for the next. */
export interface VsockDevice {
  /** Its vhost-user socket. */
  readonly socket: string;
  /** The host side's Unix socket. */
  readonly uds: string;
  readonly child: ChildProcess;
  readonly stderr: () => string;
  /** Resolves with the exit code (or signal) once it ended. */
  readonly exited: Promise<number | string | null>;
  /** SIGTERM, SIGKILL after 5 s, and wait. */
  stop(): Promise<void>;
}

/**
 * Starts vhost-device-vsock for guest `cid` with its sockets in `dir`, and resolves once its
 * vhost-user socket accepts a connection (it prints nothing when ready; the probe connection is
 * closed at once and the daemon waits for the next front-end).
 */
export async function startVsockDevice(dir: string, cid: number, deadlineMs = 20_000): Promise<VsockDevice> {
  const socket = join(dir, "vsock.sock");
  const uds = join(dir, "vm.vsock");
  const [program, ...args] = [...peerCommand("sid", "vhost-device-vsock"), "--vm", `guest-cid=${cid},socket=${socket},uds-path=${uds}`];
  const child = spawn(program as string, args, { stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stdout!.on("data", (b: Buffer) => (stderr += b.toString()));
  child.stderr!.on("data", (b: Buffer) => (stderr += b.toString()));
  const kill = () => child.kill("SIGKILL");
  process.once("exit", kill);
  const exited = new Promise<number | string | null>((resolve) => {
    child.once("exit", (code, signal) => {
      process.off("exit", kill);
      resolve(code ?? signal);
    });
    child.once("error", () => resolve(null));
  });
  const device: VsockDevice = {
    socket,
    uds,
    child,
    stderr: () => stderr,
    exited,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        const t = setTimeout(kill, 5000);
        await exited;
        clearTimeout(t);
      }
    },
  };
  try {
    const died = exited.then(() => Promise.reject(new Error(`vhost-device-vsock exited before it listened:\n${stderr}`)));
    const probe = await withDeadline(
      Promise.race([connect(socket, { retry: { attempts: 400, delayMs: 25 } }), died]),
      deadlineMs,
      "vhost-device-vsock listening",
    );
    probe.close();
  } catch (err) {
    await device.stop();
    throw err;
  }
  return device;
}

/**
 * The host connecting to a guest's port: `CONNECT <port>\n` on the device's Unix socket. Resolves
 * with the socket once the device answered `OK <host port>\n` (the guest accepted), with `null`
 * when the device closed it instead (the guest refused: RST).
 */
export function hostConnect(uds: string, port: number): Promise<{ readonly socket: Socket; readonly rest: Buffer } | null> {
  return new Promise((resolve, reject) => {
    const s = netConnect(uds);
    let head = Buffer.alloc(0);
    const onData = (b: Buffer) => {
      head = Buffer.concat([head, b]);
      const nl = head.indexOf(0x0a);
      if (nl < 0) return;
      s.off("data", onData);
      s.pause();
      const line = head.subarray(0, nl).toString();
      if (!/^OK \d+$/.test(line)) reject(new Error(`vhost-device-vsock answered "${line}" to CONNECT ${port}`));
      else resolve({ socket: s, rest: head.subarray(nl + 1) });
    };
    s.on("data", onData);
    s.once("error", reject);
    s.once("close", () => resolve(null)); // no effect once resolved
    s.write(`CONNECT ${port}\n`);
  });
}
