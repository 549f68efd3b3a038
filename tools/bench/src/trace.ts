/**
 * The cost of `vhost-user-device trace` (issue 16): the proxy sits on the vhost-user socket only
 * (rings and eventfds go straight from front-end to back-end), so its cost is per control message.
 * A vhostkit front-end times GET_FEATURES round trips to the RAM blk example directly and through a
 * trace proxy (its trace written to a file), in back-to-back pairs with the order alternating. Prints
 * both medians, the median of the per-pair ratios and their spread.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Frontend } from "@vhostkit/frontend";
import { startDevice } from "./backend.js";
import { median, note, root, size, table } from "./harness.js";

/** Microseconds per GET_FEATURES round trip over `n` requests on a fresh connection to `socket`. */
async function roundTripMicros(socket: string, n: number): Promise<number> {
  const fe = await Frontend.connect(socket);
  try {
    for (let i = 0; i < Math.min(n, 50); i++) await fe.getFeatures(); // warm-up
    const t0 = performance.now();
    for (let i = 0; i < n; i++) await fe.getFeatures();
    return ((performance.now() - t0) * 1000) / n;
  } finally {
    fe.close();
  }
}

/** Starts one trace proxy (it serves one session) and resolves once it listens. */
function startProxy(listen: string, connect: string, out: string): Promise<() => void> {
  const child = spawn(process.execPath, [join(root, "apps/device/src/main.ts"), "trace", "--listen", listen, "--connect", connect, "--out", out], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  return new Promise((resolve, reject) => {
    let err = "";
    child.stderr.setEncoding("utf8").on("data", (d: string) => {
      err += d;
      if (err.includes("tracing ")) resolve(() => child.kill("SIGTERM"));
    });
    child.once("exit", (code) => reject(new Error(`trace proxy exited (${code}): ${err}`)));
  });
}

/** Run the trace-proxy benchmark and print its table. */
export async function run(): Promise<void> {
  const n = Number(process.env["VHOSTKIT_BENCH_MSGS"] ?? size(5000, 100));
  const rounds = Number(process.env["VHOSTKIT_BENCH_ROUNDS"] ?? size(7, 1));
  const dir = mkdtempSync(join(tmpdir(), "vhostkit-bench-trace-"));
  const device = await startDevice(dir, "ram-blk", []);
  try {
    const direct: number[] = [];
    const proxied: number[] = [];
    const ratios: number[] = [];
    for (let i = 0; i < rounds; i++) {
      const measure = async (mode: "direct" | "proxied"): Promise<number> => {
        if (mode === "direct") return roundTripMicros(device.socket, n);
        const listen = join(dir, `proxy-${i}.sock`);
        const stop = await startProxy(listen, device.socket, join(dir, `trace-${i}.txt`));
        try {
          return await roundTripMicros(listen, n);
        } finally {
          stop();
        }
      };
      const order = i % 2 === 0 ? (["direct", "proxied"] as const) : (["proxied", "direct"] as const);
      const got: Record<string, number> = {};
      for (const mode of order) got[mode] = await measure(mode);
      direct.push(got["direct"] as number);
      proxied.push(got["proxied"] as number);
      ratios.push((got["proxied"] as number) / (got["direct"] as number));
    }
    note(`GET_FEATURES round trips to the RAM blk example, µs each (medians of ${rounds} pairs of ${n}); the proxy decodes and writes every message to a file`);
    table(
      ["direct µs", "through trace µs", "trace ÷ direct (median)", "trace ÷ direct (lowest–highest)"],
      [
        [
          median(direct).toFixed(1),
          median(proxied).toFixed(1),
          median(ratios).toFixed(2),
          `${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)}`,
        ],
      ],
    );
  } finally {
    device.child.kill("SIGTERM");
    rmSync(dir, { recursive: true, force: true });
  }
}
