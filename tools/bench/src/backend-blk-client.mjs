// Client side of the back-end benchmark; runtime-neutral. Connects the vhostkit front-end to a
// vhost-user-blk back-end and reads 4 KiB blocks at a given queue depth; prints IOPS.
//   backend-blk-client.mjs <socket> <queue-depth> <requests> [inflight-on|inflight-off]
// With a fourth argument the rings are split and INFLIGHT_SHMFD is acknowledged (on) or not (off):
// the inflight benchmark compares the back-end's tracking cost.
import { BlkDriver, Guest, SUPPORTED_PROTOCOL_FEATURES } from "@vhostkit/frontend";
import { ProtocolFeature } from "@vhostkit/wire";

const [socketPath, qdArg, nArg, mode] = process.argv.slice(2);
const inflight =
  mode === undefined
    ? {}
    : { packedRing: false, protocolFeatures: SUPPORTED_PROTOCOL_FEATURES | (mode === "inflight-on" ? ProtocolFeature.INFLIGHT_SHMFD : 0n) };
const qd = Number(qdArg);
const n = Number(nArg);
const guest = new Guest({ ramSize: 64n << 20n });
const device = await guest.addDevice({ socketPath, retry: { attempts: 100, delayMs: 20 }, ...inflight });
if (mode !== undefined && ((device.info.ackedProtocolFeatures & ProtocolFeature.INFLIGHT_SHMFD) !== 0n) !== (mode === "inflight-on"))
  throw new Error(`INFLIGHT_SHMFD not ${mode}`);
const blk = await BlkDriver.attach(device, { queueSize: 128 });
const sectors = 8192n; // read within the first 4 MiB
async function run(count) {
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      await blk.read((BigInt(i) * 8n) % sectors, 8);
    }
  };
  await Promise.all(Array.from({ length: qd }, worker));
}
await run(n < 2000 ? n : Math.max(2000, n / 5)); // warm-up: JIT, heap, and the reactor's adaptive spin (bench --quick: as many as measured)
const t0 = process.hrtime.bigint();
await run(n);
const ns = Number(process.hrtime.bigint() - t0);
await guest.close();
console.log(((n * 1e9) / ns).toFixed(0));
