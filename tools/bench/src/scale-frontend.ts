/**
 * Front-end side of the scale benchmark (scale.ts): one process, one guest, devices added one
 * after the other to the back-end of scale-backend.ts (device i on `<prefix>-<i>.sock`), each with
 * its 4 queues started. For each device count N of the list, every queue of the first N devices is
 * driven at queue depth `qd` with null 4 KiB reads (16-byte header out, 4096 + 1 bytes in) for
 * `ms` milliseconds, each request submitted with `transfer` (a promise per request) or, with
 * `posted`, from the previous request's completion callback into buffers pinned once. Prints one JSON line per N: requests completed, wall ns, CPU µs of this
 * process and of the back-end process (from /proc), and both RSS values (after setting up N
 * devices, before driving them).
 *   bun scale-frontend.ts <socket-prefix> <back-end pid> <counts, e.g. 1,2,4,8,16> <ms> <qd> [transfer|posted]
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

/** How the requests are submitted: `transfer` (a promise per request, buffers allocated and copied each time) or `posted`. */
export type ScaleDriver = "transfer" | "posted";

/** Drive `queues` at depth `qd` each until `until` (performance.now() ms); resolves with the requests completed. */
function drive(driver: ScaleDriver, queues: readonly DriverQueue[], qd: number, until: number): Promise<number> {
  return driver === "posted" ? drivePosted(queues, qd, until) : driveTransfer(queues, qd, until);
}

/** One request slot of the posted driver: a 16-byte header and 4096 + 1 bytes to be written, pinned for the queue's life. */
interface Slot {
  readonly readable: readonly { readonly addr: bigint; readonly len: number }[];
  readonly writable: readonly { readonly addr: bigint; readonly len: number }[];
}

const slots = new Map<DriverQueue, Slot[]>();

/** The queue's `qd` slots (pinned on first use: the header stays zero, a virtio-blk IN at sector 0). */
function slotsOf(q: DriverQueue, qd: number): Slot[] {
  let s = slots.get(q);
  if (s === undefined) {
    s = Array.from({ length: qd }, () => {
      const header = q.pinBuffer(HEADER.byteLength);
      const data = q.pinBuffer(4096 + 1);
      return {
        readable: [{ addr: header.addr, len: HEADER.byteLength }],
        writable: [
          { addr: data.addr, len: 4096 },
          { addr: data.addr + 4096n, len: 1 },
        ],
      };
    });
    slots.set(q, s);
  }
  return s;
}

/**
 * Each completed request is submitted again from its completion callback (`DriverQueue.post`), so
 * the requests a queue completes in one round go back to the ring together: one publish, at most one
 * kick. With `transfer` each request resumes in its own promise continuation and publishes (and
 * kicks) alone, and a device that wakes on the first kick takes a partial batch.
 */
function drivePosted(queues: readonly DriverQueue[], qd: number, until: number): Promise<number> {
  let done = 0;
  let open = 0;
  return new Promise<number>((resolve, reject) => {
    for (const q of queues) {
      for (const slot of slotsOf(q, qd)) {
        const go = (): void => {
          open++;
          q.post(slot.readable, slot.writable, finish, reject);
        };
        const finish = (): void => {
          done++;
          open--;
          if (performance.now() < until) go();
          else if (open === 0) resolve(done);
        };
        go();
      }
    }
  });
}

async function driveTransfer(queues: readonly DriverQueue[], qd: number, until: number): Promise<number> {
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
  const [prefix, pidArg, countsArg, msArg, qdArg, driverArg] = process.argv.slice(2);
  if (prefix === undefined || pidArg === undefined) throw new Error("usage: scale-frontend.ts <socket-prefix> <pid> <counts> <ms> <qd> [transfer|posted]");
  const driver: ScaleDriver = driverArg === "posted" ? "posted" : "transfer";
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
      await drive(driver, active, qd, performance.now() + ms / 4); // warm-up: JIT, the new rings, the reactor's spin
      const fe0 = process.cpuUsage();
      const be0 = procCpuUs(backend);
      const t0 = process.hrtime.bigint();
      const requests = await drive(driver, active, qd, performance.now() + ms);
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
