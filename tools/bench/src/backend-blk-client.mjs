// Client side of the back-end benchmark; runtime-neutral. Connects the vhostkit front-end to a
// vhost-user-blk back-end and reads 4 KiB blocks at a given queue depth; prints IOPS (last line; the
// line before it, "driver-cpu <µs>", the CPU this process spent per request).
//   backend-blk-client.mjs <socket> <queue-depth> <requests> [inflight-on|inflight-off|log-pairs] [split|packed] [pairs] [device-pid]
// inflight-on/off: INFLIGHT_SHMFD is acknowledged (on) or not (off), on the ring layout the fifth
// argument names (split when absent): the inflight benchmark compares the back-end's tracking cost. log-pairs: LOG_SHMFD is acknowledged, the
// rings are of the layout the fifth argument names, and <pairs> back-to-back pairs of <requests>
// reads run on the one connection, one with dirty page logging on (Device.startDirtyLog before it,
// the log read and stopDirtyLog after, all outside the timing) and one off, the order alternating;
// prints {"on": [IOPS...], "off": [IOPS...], "onCpu": [...], "offCpu": [...]}, the last two the CPU time
// the device process (all its threads, /proc/<device-pid>/task/*/schedstat) spent per request, in
// microseconds: the dirtylog benchmark. VHOSTKIT_BENCH_DRIVER_POLL_US=<µs>: the driver polls its used
// ring that long after the last completion (DriverQueue.setPolling; off by default, as in the bench).
import { BlkDriver, Guest, SUPPORTED_PROTOCOL_FEATURES } from "@vhostkit/frontend";
import { ProtocolFeature } from "@vhostkit/wire";
import { processCpuNs } from "./process-cpu.mjs";

const [socketPath, qdArg, nArg, mode, layout, pairsArg, devicePid] = process.argv.slice(2);
const logging = mode === "log-pairs";
const inflight =
  mode === undefined
    ? {}
    : logging
      ? { dirtyLog: true, packedRing: layout === "packed" }
      : { packedRing: layout === "packed", protocolFeatures: SUPPORTED_PROTOCOL_FEATURES | (mode === "inflight-on" ? ProtocolFeature.INFLIGHT_SHMFD : 0n) };
const qd = Number(qdArg);
const n = Number(nArg);
const guest = new Guest({ ramSize: 64n << 20n });
const device = await guest.addDevice({ socketPath, retry: { attempts: 100, delayMs: 20 }, ...inflight });
if (mode !== undefined && !logging && ((device.info.ackedProtocolFeatures & ProtocolFeature.INFLIGHT_SHMFD) !== 0n) !== (mode === "inflight-on"))
  throw new Error(`INFLIGHT_SHMFD not ${mode}`);
const blk = await BlkDriver.attach(device, { queueSize: 128 });
if (mode !== undefined && blk.queue.packed !== (layout === "packed")) throw new Error(`ring layout not ${layout ?? "split"}`);
if (process.env.VHOSTKIT_BENCH_DRIVER_POLL_US) blk.queue.setPolling(Number(process.env.VHOSTKIT_BENCH_DRIVER_POLL_US));
const sectors = 8192n; // read within the first 4 MiB
/**
 * `count` reads, `qd` in flight: each completion submits the next read from its callback (the
 * driver publishes what one completion round submits together), without a promise per read.
 */
function run(count) {
  return new Promise((resolve, reject) => {
    let next = 0;
    let done = 0;
    const submit = () => {
      const i = next++;
      blk.readWith((BigInt(i) * 8n) % sectors, 8, onRead);
    };
    const onRead = (err) => {
      if (err !== undefined) return reject(err);
      if (++done === count) return resolve();
      if (next < count) submit();
    };
    for (let k = 0; k < qd && next < count; k++) submit();
  });
}
await run(n < 2000 ? n : Math.max(2000, n / 5)); // warm-up: JIT, heap, and the reactor's adaptive spin (bench --quick: as many as measured)
/** IOPS of `count` reads. */
async function timed(count) {
  const t0 = process.hrtime.bigint();
  await run(count);
  return (count * 1e9) / Number(process.hrtime.bigint() - t0);
}
/** Nanoseconds of CPU the device process has used so far, over all its threads (0 without a pid). */
function deviceCpuNs() {
  return devicePid === undefined ? 0 : processCpuNs(Number(devicePid));
}
if (logging) {
  const iops = { on: [], off: [], onCpu: [], offCpu: [] };
  for (let i = 0; i < Number(pairsArg); i++) {
    for (const on of i % 2 === 0 ? [true, false] : [false, true]) {
      const log = on ? await device.startDirtyLog() : undefined;
      const cpu0 = deviceCpuNs();
      iops[on ? "on" : "off"].push(await timed(n));
      iops[on ? "onCpu" : "offCpu"].push((deviceCpuNs() - cpu0) / n / 1000);
      if (log === undefined) continue;
      // The reads wrote their data pages: a log that stayed empty would mean nothing was measured.
      if (log.takeDirtyPages().length === 0) throw new Error("logging on: no page marked");
      await device.stopDirtyLog();
      log.dispose();
    }
  }
  await guest.close();
  console.log(JSON.stringify(iops));
  process.exit(0);
}
const cpu0 = processCpuNs(process.pid);
const iops = await timed(n);
const driverCpu = (processCpuNs(process.pid) - cpu0) / n / 1000;
await guest.close();
console.log(`driver-cpu ${driverCpu.toFixed(2)}`); // this process (the driver) per request, µs
console.log(iops.toFixed(0));
