/**
 * Front-end side of the scale benchmark (scale.ts): one process, one guest, devices added one
 * after the other to the back-end of scale-backend.ts (device i on `<prefix>-<i>.sock`), each with
 * its 4 queues started. For each device count N of the list, every queue of the first N devices is
 * driven at queue depth `qd` with null 4 KiB reads (16-byte header out, 4096 + 1 bytes in) for
 * `ms` milliseconds. Prints one JSON line per N: requests completed, wall ns, CPU µs of this
 * process and of the back-end process (from /proc), and both RSS values (after setting up N
 * devices, before driving them).
 *   bun scale-frontend.ts <socket-prefix> <back-end pid> <counts, e.g. 1,2,4,8,16> <ms> <qd>
 */
import { readFileSync } from "node:fs";
import { Guest, type DriverQueue } from "@vhostkit/frontend";
import { SCALE_QUEUES } from "./scale-backend.js";

/** One line of output: the figures of one device count. */
export interface ScaleSample {
  devices: number;
  requests: number;
  wallNs: number;
  frontendCpuUs: number;
  backendCpuUs: number;
  frontendRssKiB: number;
  backendRssKiB: number;
}

const TICK_US = 10_000; // USER_HZ = 100 on Linux

/** utime + stime of `pid` in µs (10 ms resolution). */
function procCpuUs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) * TICK_US; // fields 14 and 15 of stat(5)
}

/** VmRSS of `pid` in KiB. */
function procRssKiB(pid: number): number {
  const m = /^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m?.[1] ?? 0);
}

const HEADER = new Uint8Array(16); // virtio-blk IN (type 0) at sector 0

/** Drive `queues` at depth `qd` each until `until` (performance.now() ms); resolves with the requests completed. */
async function drive(queues: readonly DriverQueue[], qd: number, until: number): Promise<number> {
  let done = 0;
  const worker = async (q: DriverQueue): Promise<void> => {
    while (performance.now() < until) {
      await q.transfer([HEADER], [4096, 1]);
      done++;
    }
  };
  await Promise.all(queues.flatMap((q) => Array.from({ length: qd }, () => worker(q))));
  return done;
}

if (import.meta.main) {
  const [prefix, pidArg, countsArg, msArg, qdArg] = process.argv.slice(2);
  if (prefix === undefined || pidArg === undefined) throw new Error("usage: scale-frontend.ts <socket-prefix> <pid> <counts> <ms> <qd>");
  const backend = Number(pidArg);
  const counts = (countsArg ?? "1,16").split(",").map(Number);
  const ms = Number(msArg ?? 1000);
  const qd = Number(qdArg ?? 4);
  const guest = new Guest({ ramSize: 32n << 20n });
  const queues: DriverQueue[][] = [];
  try {
    for (const n of counts) {
      while (queues.length < n) {
        const d = await guest.addDevice({ socketPath: `${prefix}-${queues.length}.sock`, retry: { attempts: 100, delayMs: 20 } });
        queues.push([...(await d.start({ features: 0n, queues: Array.from({ length: SCALE_QUEUES }, (_, i) => i), queueSize: 64 }))]);
      }
      const active = queues.slice(0, n).flat();
      // Both processes collect their garbage first (the back-end on SIGUSR2), so RSS counts what is kept.
      process.kill(backend, "SIGUSR2");
      Bun.gc(true);
      await Bun.sleep(200);
      const frontendRssKiB = Math.round(process.memoryUsage().rss / 1024);
      const backendRssKiB = procRssKiB(backend);
      await drive(active, qd, performance.now() + ms / 4); // warm-up: JIT, the new rings, the reactor's spin
      const fe0 = process.cpuUsage();
      const be0 = procCpuUs(backend);
      const t0 = process.hrtime.bigint();
      const requests = await drive(active, qd, performance.now() + ms);
      const wallNs = Number(process.hrtime.bigint() - t0);
      const fe = process.cpuUsage(fe0);
      const sample: ScaleSample = {
        devices: n,
        requests,
        wallNs,
        frontendCpuUs: fe.user + fe.system,
        backendCpuUs: procCpuUs(backend) - be0,
        frontendRssKiB,
        backendRssKiB,
      };
      console.log(JSON.stringify(sample));
    }
  } finally {
    await guest.close();
  }
}
