/**
 * DPDK 22.11's testpmd for the network benchmarks, without hugepages (the flags
 * tools/interop/test/helpers/testpmd.ts documents): a vhost port (creating the socket) or a
 * virtio_user port, one forwarding core, its per-second port counters (Rx-pps, Tx-pps) collected.
 */
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { peerCommand } from "@vhostkit/peers/peers";
import { median } from "./harness.js";

/** A running testpmd: its per-second samples and its stop. */
export interface BenchPmd {
  /** Rx-pps, one a second. */
  readonly rxPps: number[];
  /** Tx-pps, one a second. */
  readonly txPps: number[];
  /** SIGKILL and wait (the counters are in the samples already). */
  stop(): Promise<void>;
}

/**
 * Starts testpmd as the `vhost` port (creating `socket`) or the `virtio-user` port (connecting to
 * it) in forwarding `mode`, forwarding on CPU `cpu` (its main lcore on the other of CPUs 0 and 1);
 * resolves once it forwards. `txLength`: frame bytes for txonly.
 */
export function startBenchTestpmd(role: "vhost" | "virtio-user", socket: string, mode: string, cpu: 0 | 1, txLength = 64): Promise<BenchPmd> {
  const vdev = role === "vhost" ? `net_vhost0,iface=${socket},queues=1` : `net_virtio_user0,path=${socket},queues=1`;
  const eal = ["-l", "0,1", "--main-lcore", String(1 - cpu), "--no-huge", "-m", "1024", "--no-shconf", "--no-pci", "--vdev", vdev];
  const app = [`--forward-mode=${mode}`, "-a", "--stats-period=1", "--nb-cores=1", "--total-num-mbufs=16384", "--no-mlockall", `--txpkts=${txLength}`];
  const [cmd, ...pre] = peerCommand("dpdk", "dpdk-testpmd");
  const child = spawn(cmd as string, [...pre, ...eal, "--", ...app], { stdio: ["ignore", "pipe", "pipe"] });
  const rxPps: number[] = [];
  const txPps: number[] = [];
  const tail: string[] = [];
  const exited = new Promise<void>((r) => child.once("close", () => r()));
  const stop = async () => {
    child.kill("SIGKILL");
    await exited;
  };
  return new Promise((resolve, reject) => {
    const onLine = (l: string) => {
      tail.push(l);
      if (tail.length > 40) tail.shift();
      const rx = /Rx-pps:\s*(\d+)/.exec(l);
      if (rx) rxPps.push(Number(rx[1]));
      const tx = /Tx-pps:\s*(\d+)/.exec(l);
      if (tx) txPps.push(Number(tx[1]));
      if (/packet forwarding - ports=1\b/.test(l)) resolve({ rxPps, txPps, stop });
    };
    createInterface({ input: child.stdout }).on("line", onLine);
    createInterface({ input: child.stderr }).on("line", onLine);
    child.once("close", (code) => reject(new Error(`testpmd exited (${code}) before forwarding:\n${tail.join("\n")}`)));
  });
}

/** Median (Mpps) of `samples` after `warm` of them, once `n` more have arrived. */
export async function medianMpps(samples: number[], warm: number, n: number): Promise<number> {
  while (samples.length < warm + n) await new Promise((r) => setTimeout(r, 100));
  return median(samples.slice(warm, warm + n)) / 1e6;
}
