/**
 * virtio-net against DPDK (issue 21), the driver side: Mpps through DPDK 22.11 testpmd's vhost port
 * (one forwarding core, CPU 0) from two front-ends, measured alternately in every round: testpmd's
 * own virtio_user port (the baseline, forwarding on CPU 1) and the vhostkit virtio-net driver
 * (`vhost-user-device net` on Bun, pinned to CPU 1). Both directions, 64- and 1500-byte frames:
 * "driver transmits" — the front-end generates (virtio_user txonly / `net gen`), the vhost port
 * counts what it receives (rxonly, its Rx-pps); "driver receives" — the vhost port generates
 * (txonly, its Tx-pps: frames it could place in the front-end's receive ring) and the front-end
 * takes them (virtio_user rxonly / `net sink`). The figure is the vhost port's per-second counter,
 * median of its samples after two warm-up seconds; the ratio is taken per round, then its median
 * and range. Needs the `dpdk` peer set (tools/peers/fetch.sh dpdk); without it, says so.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { PeerMissingError, requirePeer } from "@vhostkit/peers/peers";
import { QUICK, note, root, size, spread, table } from "./harness.js";
import { medianMpps, startBenchTestpmd } from "./testpmd.js";

const CLI = join(root, "apps/device/src/main.ts");
/** Warm-up samples (seconds) skipped before measuring. */
const WARM = QUICK ? 1 : 2;

type Direction = "tx" | "rx";
type FrontEnd = "dpdk" | "vhostkit";

/** `vhost-user-device net gen|sink` on Bun, pinned to CPU 1, until stopped. */
function startDriver(direction: Direction, socket: string, len: number): () => Promise<void> {
  const args = direction === "tx" ? ["net", "gen", "--size", String(len)] : ["net", "sink"];
  const child = spawn("taskset", ["-c", "1", process.execPath, CLI, ...args, "--socket", socket, "--seconds", "600"], {
    stdio: ["ignore", "ignore", "ignore"],
  });
  const exited = new Promise<void>((r) => child.once("close", () => r()));
  return async () => {
    child.kill("SIGKILL");
    await exited;
  };
}

/** One measurement: `front` through testpmd's vhost port in `direction`, `len`-byte frames, `seconds` after warm-up. */
async function measure(direction: Direction, front: FrontEnd, len: number, seconds: number): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), "vhostkit-bench-net-"));
  const socket = join(dir, "net.sock");
  const stops: (() => Promise<void>)[] = [];
  try {
    const port = await startBenchTestpmd("vhost", socket, direction === "tx" ? "rxonly" : "txonly", 0, len);
    stops.push(port.stop);
    const samples = direction === "tx" ? port.rxPps : port.txPps;
    const from = samples.length;
    if (front === "dpdk") {
      const fe = await startBenchTestpmd("virtio-user", socket, direction === "tx" ? "txonly" : "rxonly", 1, len);
      stops.unshift(fe.stop);
    } else stops.unshift(startDriver(direction, socket, len));
    const got = await medianMpps(samples, from + WARM, seconds);
    return got;
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
    note(`net: not measured: ${e.message}`);
    console.log(`not measured: ${e.message}`);
    return;
  }
  const rounds = size(5, 1);
  const seconds = QUICK ? 1 : 3;
  const lengths = QUICK ? [64] : [64, 1500];
  const rows: (string | number)[][] = [];
  const f = (x: number) => x.toFixed(3);
  const cell = (xs: number[]) => {
    const s = spread(xs);
    return `${f(s.median)} (${f(s.lo)}-${f(s.hi)})`;
  };
  // --quick proves the benchmark runs: one direction, one size.
  for (const direction of QUICK ? (["tx"] as const) : (["tx", "rx"] as const)) {
    for (const len of lengths) {
      const dpdk: number[] = [];
      const ours: number[] = [];
      const ratios: number[] = [];
      for (let i = 0; i < rounds; i++) {
        // Alternate which front-end goes first, so a drift of the machine's speed hits both alike.
        const order: FrontEnd[] = i % 2 === 0 ? ["dpdk", "vhostkit"] : ["vhostkit", "dpdk"];
        const got: Partial<Record<FrontEnd, number>> = {};
        for (const fe of order) got[fe] = await measure(direction, fe, len, seconds);
        dpdk.push(got.dpdk ?? 0);
        ours.push(got.vhostkit ?? 0);
        ratios.push((got.vhostkit ?? 0) / Math.max(got.dpdk ?? 0, 1e-9));
      }
      rows.push([direction === "tx" ? "driver transmits" : "driver receives", len, cell(dpdk), cell(ours), cell(ratios)]);
    }
  }
  note(`front-ends through testpmd's vhost port, Mpps: median (min-max) of ${rounds} rounds, ${seconds} s each after ${WARM} s warm-up; ratio per round`);
  note(`load average at the end ${loadavg()[0]?.toFixed(1)} on ${availableParallelism()} CPUs: DPDK's busy-polling cores lose the most when other jobs run`);
  table(["direction", "frame bytes", "DPDK virtio_user (baseline)", "vhostkit driver (Bun)", "vhostkit / DPDK"], rows);
}

// Standalone: `bun tools/bench/src/net.ts [--quick]`.
if (import.meta.main) await run();
