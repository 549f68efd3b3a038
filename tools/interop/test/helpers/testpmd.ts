/**
 * DPDK 22.11's testpmd (the `dpdk` peer set) as a vhost-user network port, without hugepages: as
 * the back-end (`net_vhost0,iface=SOCK`, a server socket) or as the front-end
 * (`net_virtio_user0,path=SOCK`, connecting to a listening device). It runs non-interactively
 * (`-a --stats-period`), so its port counters arrive as text every period, and SIGINT makes it
 * stop forwarding and print its forward statistics, which {@link Testpmd.stop} parses.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { peerCommand } from "@vhostkit/peers/peers";
import { withDeadline } from "./processes.js";

/** testpmd's forwarding modes the net tests and benchmarks use. */
export type ForwardMode = "macswap" | "rxonly" | "txonly" | "io" | "mac";

/** How to start testpmd. */
export interface TestpmdOptions {
  /** `vhost`: testpmd is the device (it creates `socket`); `virtio-user`: testpmd is the driver (it connects to `socket`). */
  readonly role: "vhost" | "virtio-user";
  readonly socket: string;
  readonly forwardMode: ForwardMode;
  /** Queue pairs of the port (default 1). */
  readonly queues?: number;
  /** Frame length for `txonly` (`--txpkts`, default 64). */
  readonly txLength?: number;
  /** Seconds between the periodic counters (default 1). */
  readonly statsPeriod?: number;
  /**
   * The CPU the forwarding lcore runs on (default 1); the main lcore takes the other of CPUs 0 and 1.
   * Two testpmds on a 2-CPU machine must forward on different CPUs, or each spins in the other's slice.
   */
  readonly forwardCpu?: 0 | 1;
  /** EAL memory in MiB (`-m`, default 1024): one memfd, shared whole with the vhost-user peer. */
  readonly memoryMb?: number;
  /** More `--vdev` options, e.g. `client=1` (vhost) or `server=1` (virtio-user). */
  readonly vdevExtra?: string;
  /** More testpmd (application) arguments. */
  readonly appArgs?: readonly string[];
  /** Deadline for readiness (default 30 s: EAL maps and clears its whole memory first). */
  readonly readyMs?: number;
}

/** A port's counters as testpmd prints them. */
export interface PortCounters {
  readonly rxPackets: number;
  readonly rxDropped: number;
  readonly txPackets: number;
  readonly txDropped: number;
}

/** One periodic sample of port 0 (`--stats-period`). */
export interface PortSample {
  readonly rxPackets: number;
  readonly txPackets: number;
  readonly rxPps: number;
  readonly txPps: number;
}

/** A running testpmd. */
export interface Testpmd {
  readonly child: ChildProcess;
  /** Every line it printed so far (stdout and stderr, in arrival order per stream). */
  readonly lines: readonly string[];
  /** The periodic samples so far. */
  readonly samples: readonly PortSample[];
  /** Resolves with the first line (seen or future) matching `re`; rejects when testpmd exits first. */
  line(re: RegExp, ms?: number): Promise<string>;
  /** SIGINT, then its accumulated forward statistics (SIGKILL and a rejection if it does not exit within `ms`). */
  stop(ms?: number): Promise<PortCounters>;
  /** SIGKILL if still running, and wait. */
  kill(): Promise<void>;
}

const ESC = String.fromCharCode(27);
const ANSI = new RegExp(`${ESC}\\[[0-9;]*[A-Za-z]`, "g");

const num = (l: string, key: string): number | undefined => {
  const m = new RegExp(`${key}:\\s*(\\d+)`).exec(l);
  return m === null ? undefined : Number(m[1]);
};

/** The EAL and testpmd arguments for `opts` (exported for the benchmark, which starts testpmd itself). */
export function testpmdArgs(opts: TestpmdOptions): string[] {
  const queues = opts.queues ?? 1;
  const fwd = opts.forwardCpu ?? 1;
  const vdev = opts.role === "vhost" ? `net_vhost0,iface=${opts.socket},queues=${queues}` : `net_virtio_user0,path=${opts.socket},queues=${queues}`;
  return [
    "-l",
    "0,1",
    "--main-lcore",
    String(1 - fwd),
    "--no-huge",
    "-m",
    String(opts.memoryMb ?? 1024),
    "--no-shconf",
    "--no-pci",
    "--vdev",
    opts.vdevExtra === undefined ? vdev : `${vdev},${opts.vdevExtra}`,
    "--",
    `--forward-mode=${opts.forwardMode}`,
    "-a",
    `--stats-period=${opts.statsPeriod ?? 1}`,
    "--nb-cores=1",
    `--rxq=${queues}`,
    `--txq=${queues}`,
    "--total-num-mbufs=16384",
    "--no-mlockall",
    ...(opts.forwardMode === "txonly" ? [`--txpkts=${opts.txLength ?? 64}`] : []),
    ...(opts.appArgs ?? []),
  ];
}

/**
 * Starts testpmd and resolves once it forwards: as `vhost`, once its socket listens; as
 * `virtio-user`, once it has connected, negotiated and started forwarding. Throws
 * `PeerMissingError` at once when the `dpdk` set is not fetched.
 */
export async function startTestpmd(opts: TestpmdOptions): Promise<Testpmd> {
  const [cmd, ...pre] = peerCommand("dpdk", "dpdk-testpmd");
  const child = spawn(cmd as string, [...pre, ...testpmdArgs(opts)], { stdio: ["ignore", "pipe", "pipe"] });
  const lines: string[] = [];
  const samples: PortSample[] = [];
  let waiters: { re: RegExp; resolve: (l: string) => void; reject: (e: Error) => void }[] = [];
  let pending: { rxPackets?: number | undefined; txPackets?: number | undefined; rxPps?: number | undefined } = {};
  const onLine = (raw: string) => {
    // The periodic block starts with terminal escapes (clear screen): drop them.
    const l = raw.includes(ESC) ? raw.replace(ANSI, "") : raw;
    lines.push(l);
    // The periodic block: "RX-packets: N  RX-missed: ..", "TX-packets: N  TX-errors: ..",
    // "Rx-pps: N  Rx-bps: ..", "Tx-pps: N  Tx-bps: ..".
    if (/RX-missed:/.test(l)) pending = { rxPackets: num(l, "RX-packets") };
    else if (/TX-errors:/.test(l)) pending.txPackets = num(l, "TX-packets");
    else if (/Rx-pps:/.test(l)) pending.rxPps = num(l, "Rx-pps");
    else if (/Tx-pps:/.test(l) && pending.rxPackets !== undefined && pending.txPackets !== undefined) {
      samples.push({ rxPackets: pending.rxPackets, txPackets: pending.txPackets, rxPps: pending.rxPps ?? 0, txPps: num(l, "Tx-pps") ?? 0 });
      pending = {};
    }
    waiters = waiters.filter((w) => (w.re.test(l) ? (w.resolve(l), false) : true));
  };
  createInterface({ input: child.stdout! }).on("line", onLine);
  createInterface({ input: child.stderr! }).on("line", onLine);
  const kill = () => child.kill("SIGKILL");
  process.once("exit", kill);
  const exited = new Promise<number | string | null>((resolve) => {
    const ended = (why: number | string | null) => {
      process.off("exit", kill);
      for (const w of waiters) w.reject(new Error(`testpmd exited (${why}) before a line matching ${w.re}\n${lines.slice(-40).join("\n")}`));
      waiters = [];
      resolve(why);
    };
    // "close", not "exit": every line of both pipes has been read by then.
    child.once("close", (code, signal) => ended(code ?? signal));
    child.once("error", (e) => ended(e.message));
  });
  const running = () => child.exitCode === null && child.signalCode === null;
  const line = (re: RegExp, ms = 30_000): Promise<string> => {
    const seen = lines.find((l) => re.test(l));
    if (seen !== undefined) return Promise.resolve(seen);
    if (!running()) return Promise.reject(new Error(`testpmd already exited\n${lines.slice(-40).join("\n")}`));
    return withDeadline(new Promise((resolve, reject) => waiters.push({ re, resolve, reject })), ms, `testpmd line matching ${re}`);
  };
  const pmd: Testpmd = {
    child,
    lines,
    samples,
    line,
    async stop(ms = 20_000): Promise<PortCounters> {
      if (running()) child.kill("SIGINT");
      const timer = setTimeout(() => child.kill("SIGKILL"), ms);
      try {
        await exited;
      } finally {
        clearTimeout(timer);
      }
      // "Accumulated forward statistics for all ports", then "RX-packets: N RX-dropped: N ..." and "TX-packets: ...".
      const at = lines.findLastIndex((l) => l.includes("Accumulated forward statistics"));
      const rx = at < 0 ? undefined : lines.slice(at + 1).find((l) => /RX-packets:/.test(l));
      const tx = at < 0 ? undefined : lines.slice(at + 1).find((l) => /TX-packets:/.test(l));
      if (rx === undefined || tx === undefined) throw new Error(`testpmd printed no forward statistics\n${lines.slice(-40).join("\n")}`);
      return {
        rxPackets: num(rx, "RX-packets") ?? 0,
        rxDropped: num(rx, "RX-dropped") ?? 0,
        txPackets: num(tx, "TX-packets") ?? 0,
        txDropped: num(tx, "TX-dropped") ?? 0,
      };
    },
    async kill(): Promise<void> {
      if (running()) child.kill("SIGKILL");
      await exited;
    },
  };
  try {
    // A virtio-user port whose device refused it is not probed: testpmd then forwards on no port.
    const started = await line(/packet forwarding - ports=\d+/, opts.readyMs ?? 30_000);
    if (!/ports=1\b/.test(started)) throw new Error(`testpmd started without its port: ${started}\n${lines.slice(-40).join("\n")}`);
    return pmd;
  } catch (e) {
    await pmd.kill();
    throw e;
  }
}
