#!/usr/bin/env node
// A virtio-net device on @vhostkit/backend (docs/virtio-net.md); Node >= 20 and Bun:
//   node examples/net-device.mjs --socket P [--socket2 P2] [--mode reflect|switch|sink|gen] [--pairs N]
//        [--no-mrg] [--size BYTES] [--count N] [--stats] [--events]
// reflect: every frame the driver transmits comes back with its MACs swapped. switch: two sockets,
// two front-ends; what one transmits the other receives (a wire). sink: frames are counted and dropped.
// gen: sink, and --count frames (0: no end) of --size bytes fill the driver's receive buffers.
// Prints "listening <path>" per socket; --stats a JSON line "stats {...}" each second; on SIGTERM
// or SIGINT the final "stats {...}" line (one per port), then exit 0.
import { parseArgs } from "node:util";
import { serve } from "@vhostkit/backend";
import { netPort } from "./virtio-net/net-device.mjs";

const { values } = parseArgs({
  options: {
    socket: { type: "string" },
    socket2: { type: "string" },
    mode: { type: "string", default: "reflect" },
    pairs: { type: "string", default: "1" },
    "no-mrg": { type: "boolean", default: false },
    size: { type: "string", default: "64" },
    count: { type: "string", default: "0" },
    stats: { type: "boolean", default: false },
    events: { type: "boolean", default: false },
  },
});
if (!values.socket) throw new Error("--socket PATH is required");
if (!["reflect", "switch", "sink", "gen"].includes(values.mode)) throw new Error(`--mode ${values.mode}: reflect, switch, sink or gen`);
if ((values.mode === "switch") !== (values.socket2 !== undefined)) throw new Error("--socket2 goes with --mode switch, and only with it");

const options = {
  mode: values.mode,
  pairs: Number(values.pairs),
  mergeable: !values["no-mrg"],
  gen: { size: Number(values.size), count: Number(values.count) },
};
const ports = [netPort(options)];
if (values.socket2) {
  ports.push(netPort({ ...options, mac: [0x52, 0x54, 0, 0x12, 0x34, 0x57] }));
  ports[0].connect(ports[1]);
  ports[1].connect(ports[0]);
}
const onEvent = values.events
  ? (e) => e.kind !== "request" && process.stdout.write(`event ${e.kind} ${e.index ?? ""} ${e.error?.code ?? ""} ${e.error?.message ?? ""}\n`)
  : undefined;
const servers = [values.socket, values.socket2]
  .filter((p) => p !== undefined)
  .map((path, i) => serve(path, ports[i].device, { dirtyLog: false, ...(onEvent ? { onEvent } : {}) }));
for (const s of servers) process.stdout.write(`listening ${s.path}\n`);
const print = () => ports.forEach((p, i) => process.stdout.write(`stats ${JSON.stringify({ port: i, ...p.stats })}\n`));
const timer = values.stats ? setInterval(print, 1000) : undefined;
const stop = async () => {
  clearInterval(timer);
  await Promise.all(servers.map((s) => s.shutdown({ graceMs: 1000 })));
  print();
  process.exit(0);
};
process.once("SIGTERM", stop);
process.once("SIGINT", stop);
