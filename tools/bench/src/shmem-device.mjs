// The back-end side of the `shmem` benchmark, in its own process (Bun or Node):
//   shmem-device.mjs --socket A [--other B] [--image FILE]
// A: a RAM blk device on @vhostkit/backend with one VIRTIO Shared Memory Region (shmid 1, 2 MiB),
// the one that maps. B (optional): a plain RAM blk device in the same process, the "other back-end"
// a front-end propagates every mapping to. The same process serves QEMU 11.1 and the vhostkit
// front-end, so both are timed by the same clock from the same side.
//
// Once A runs, the line `bench N` on stdin times N SHMEM_MAP + SHMEM_UNMAP pairs of a 64 KiB memfd:
// an operation counts as done when its reply is in and every back-end of this process has received
// the propagated ADD_MEM_REG (map) or REM_MEM_REG (unmap), the mapper's own included. Prints one
// JSON line {step:"bench", map:[µs...], unmap:[µs...]}; every other step is a JSON line too.
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { Dispatcher } from "@vhostkit/backend";
import { listen } from "@vhostkit/transport";
import { closeFd, sealedMemfd } from "@vhostkit/transport/sys";
import { ramBlk } from "../../../packages/backend/examples/ram-blk.mjs";

const { values } = parseArgs({ options: { socket: { type: "string" }, other: { type: "string" }, image: { type: "string" } } });
const say = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);
const BLOB = { shmid: 1, shmOffset: 0x10000n, len: 0x10000n, writable: true };
const disk = (image) => {
  const d = new Uint8Array(1 << 20);
  if (image) d.set(readFileSync(image).subarray(0, d.length));
  return d;
};

/** Counts of propagated memory-table requests received, per back-end, and their waiters. */
const received = { ADD_MEM_REG: [0, 0], REM_MEM_REG: [0, 0] };
let waiters = [];
const wake = () => {
  const still = [];
  for (const w of waiters) w.done() ? w.resolve() : still.push(w);
  waiters = still;
};
const until = (done) => (done() ? Promise.resolve() : new Promise((resolve) => waiters.push({ done, resolve })));
const counting = (slot) => (e) => {
  if (e.kind === "request" && (e.name === "ADD_MEM_REG" || e.name === "REM_MEM_REG")) {
    received[e.name][slot]++;
    wake();
  }
  if (e.kind === "rejected" || e.kind === "dropped") say({ step: e.kind, slot, name: e.name ?? null, code: e.error.code, message: e.error.message });
};

let client;
const mapper = {
  ...ramBlk(disk(values.image)),
  shmemRegions: () => [{ shmid: 1, size: 2n << 20n }],
  start(ctx) {
    client = ctx.client;
    say({ step: "running", canMap: ctx.client.canMap });
  },
  stop() {
    client = undefined;
  },
};

async function bench(n) {
  const backends = values.other ? 2 : 1;
  const all = (name, before) => () => received[name].slice(0, backends).every((c, i) => c > before[i]);
  const fd = sealedMemfd("vhostkit-bench-shmem", BLOB.len);
  const map = [];
  const unmap = [];
  try {
    for (let i = 0; i < n; i++) {
      let before = [...received.ADD_MEM_REG];
      const t0 = process.hrtime.bigint();
      await client.shmemMap(BLOB, fd);
      await until(all("ADD_MEM_REG", before));
      const t1 = process.hrtime.bigint();
      before = [...received.REM_MEM_REG];
      await client.shmemUnmap(BLOB);
      await until(all("REM_MEM_REG", before));
      const t2 = process.hrtime.bigint();
      map.push(Number(t1 - t0) / 1000);
      unmap.push(Number(t2 - t1) / 1000);
    }
    say({ step: "bench", map, unmap });
  } catch (err) {
    say({ step: "bench-failed", code: err.code ?? null, message: err.message });
  } finally {
    closeFd(fd);
  }
}

createInterface({ input: process.stdin }).on("line", (line) => {
  const m = /^bench (\d+)$/.exec(line.trim());
  if (m === null) return;
  if (client === undefined || !client.canMap) return say({ step: "bench-failed", message: "the mapper is not running or cannot map" });
  void bench(Number(m[1]));
});

/** Accepts one front-end on `path` and serves `device` until it leaves. */
async function serveOne(path, device, slot) {
  const listener = listen(path);
  try {
    const ep = await listener.accept();
    listener.close();
    await new Dispatcher(ep, device, { onEvent: counting(slot) }).run();
  } catch (err) {
    say({ step: "serve-failed", slot, message: err.message });
  }
}
const served = [serveOne(values.socket, mapper, 0)];
if (values.other) served.push(serveOne(values.other, ramBlk(disk(undefined)), 1));
say({ step: "listening" });
await Promise.all(served);
say({ step: "done" });
process.exit(0);
