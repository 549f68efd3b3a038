/**
 * virtio-net against DPDK (issue 21), the device side: DPDK 22.11 testpmd's virtio_user port
 * (txonly, one forwarding core) transmitting into a back-end, in Mpps the back-end takes off the
 * ring, for 64- and 1500-byte frames. Back-ends, measured in alternating order in every round:
 * testpmd's own vhost port (rxonly; the baseline) and the vhostkit virtio-net example device
 * (packages/backend/examples/net-device.mjs, sink mode, on Bun). The figure is testpmd's Tx-pps
 * (frames its port queued; a full ring refuses the rest, so in steady state that is the rate the
 * back-end empties it), the median of its per-second samples after two warm-up seconds. The ratio
 * is taken per round, then its median and range over the rounds. Needs the `dpdk` peer set
 * (tools/peers/fetch.sh dpdk); without it the benchmark says so and measures nothing.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { PeerMissingError, requirePeer } from "@vhostkit/peers/peers";
import { QUICK, note, root, size, spread, table } from "./harness.js";
import { medianMpps, startBenchTestpmd } from "./testpmd.js";

const NET_DEVICE = join(root, "packages/backend/examples/net-device.mjs");

/** The vhostkit net device (sink) on Bun, pinned to CPU 0; resolves once it listens, with its stop. */
function startDevice(socket: string): Promise<() => Promise<void>> {
  const child = spawn("taskset", ["-c", "0", process.execPath, NET_DEVICE, "--socket", socket, "--mode", "sink"], { stdio: ["ignore", "pipe", "pipe"] });
  let err = "";
  child.stderr.setEncoding("utf8").on("data", (d: string) => (err += d));
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  return new Promise((resolve, reject) => {
    createInterface({ input: child.stdout }).on("line", (l) => {
      if (l.startsWith("listening"))
        resolve(async () => {
          child.kill("SIGTERM");
          await exited;
        });
    });
    child.once("exit", (code) => reject(new Error(`net device exited (${code}): ${err}`)));
  });
}

/** One measurement: testpmd txonly of `len`-byte frames into `backend`, for `seconds` after `warm` seconds. */
async function measure(backend: "dpdk" | "vhostkit", len: number, warm: number, seconds: number): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), "vhostkit-bench-net-"));
  const socket = join(dir, "net.sock");
  const stops: (() => Promise<void>)[] = [];
  try {
    if (backend === "dpdk") {
      const be = await startBenchTestpmd("vhost", socket, "rxonly", 0);
      stops.push(be.stop);
    } else stops.push(await startDevice(socket));
    const fe = await startBenchTestpmd("virtio-user", socket, "txonly", 1, len);
    stops.unshift(fe.stop);
    return await medianMpps(fe.txPps, warm, seconds);
  } finally {
    for (const stop of stops) await stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Runs the benchmark and prints its table. */
export async function run(): Promise<void> {
  try {
    requirePeer("dpdk", "dpdk-testpmd");
  } catch (e) {
    if (!(e instanceof PeerMissingError)) throw e;
    note(`netdev: not measured: ${e.message}`);
    console.log(`not measured: ${e.message}`);
    return;
  }
  const rounds = size(5, 1);
  const seconds = QUICK ? 1 : 3;
  const warm = QUICK ? 1 : 2;
  const rows: (string | number)[][] = [];
  for (const len of QUICK ? [64] : [64, 1500]) {
    const dpdk: number[] = [];
    const ours: number[] = [];
    const ratios: number[] = [];
    for (let i = 0; i < rounds; i++) {
      // Alternate which back-end goes first, so a drift of the machine's speed hits both alike.
      const order: ("dpdk" | "vhostkit")[] = i % 2 === 0 ? ["dpdk", "vhostkit"] : ["vhostkit", "dpdk"];
      const got: Record<string, number> = {};
      for (const b of order) got[b] = await measure(b, len, warm, seconds);
      dpdk.push(got["dpdk"] ?? 0);
      ours.push(got["vhostkit"] ?? 0);
      ratios.push((got["vhostkit"] ?? 0) / (got["dpdk"] ?? 1));
    }
    const d = spread(dpdk);
    const v = spread(ours);
    const r = spread(ratios);
    const f = (x: number) => x.toFixed(2);
    rows.push([len, `${f(d.median)} (${f(d.lo)}-${f(d.hi)})`, `${f(v.median)} (${f(v.lo)}-${f(v.hi)})`, `${f(r.median)} (${f(r.lo)}-${f(r.hi)})`]);
  }
  note(`testpmd virtio_user txonly -> back-end, Mpps: median (min-max) of ${rounds} rounds, ${seconds} s each after ${warm} s warm-up`);
  note(`load average at the end ${loadavg()[0]?.toFixed(1)} on ${availableParallelism()} CPUs: DPDK's busy-polling cores lose the most when other jobs run`);
  table(["frame bytes", "DPDK vhost (baseline)", "vhostkit device (Bun)", "vhostkit / DPDK"], rows);
}

// Standalone too: `bun tools/bench/src/netdev.ts [--quick]`.
if (import.meta.main) await run();
