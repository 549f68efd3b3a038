/**
 * Fallback benchmark (issue 9): back-end B reads a blob that device A mapped into A's VIRTIO Shared
 * Memory Region (shmid 1; a 1 MiB memfd mapped by the front-end at offset 0).
 * (a) direct (propagated): B's memory table holds the mapping, as after eager propagation
 * (ADD_MEM_REG of the blob's fd at region base + offset) — a copy out of B's own mmap of it;
 * (b) MEM_READ: B's table lacks it; vhostkit's extension over a real back-end channel (socketpair),
 * served by the front-end's BackendRequestHandler from its guest space (RAM + A's region).
 * 4 KiB and 64 KiB reads, interleaved in the same run; prints GB/s and MEM_READ ÷ direct, and
 * MEM_READ with the front-end handler in its own process (fallback-frontend.ts). Target: MEM_READ
 * >= 2 GB/s at 64 KiB. Then the end-to-end latency of SHMEM_MAP with propagation to 0, 1 and 4
 * other back-ends.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { BackendClient, Dispatcher, type BackendChannel } from "@vhostkit/backend";
import { FallbackMemory } from "@vhostkit/fallback";
import { BackendRequestHandler, Guest, sharedMemoryPort } from "@vhostkit/frontend";
import { closeFd, dupCloexec, sealedMemfd } from "@vhostkit/transport/sys";
import { MemoryTable, SYNTHETIC_USER_BASE, guestAddress } from "@vhostkit/regions";
import { Endpoint, socketPair } from "@vhostkit/transport";
import { MEM_RW_MAX_PAYLOAD, UPSTREAM } from "@vhostkit/wire";
import { crossProcessReads } from "./fallback-cross.js";
import { BLOB_LEN, REGION_BASE, frontEndGuest } from "./fallback-guest.js";
import { median, note, root, size, table } from "./harness.js";

const ROUNDS = size(5, 1);
/** Bytes read per measurement: direct copies, MEM_READ (`--quick`: a few MiB). */
const DIRECT_BYTES = size(64 << 20, 1 << 20);
const MEM_READ_BYTES = size(16 << 20, 1 << 20);
/**
 * Shortest measurement, ns: a few milliseconds of 64 KiB reads can fall inside one scheduler slice
 * in which both processes run undisturbed, and so read high on a loaded machine; every measurement
 * lasts long enough to meet the same competition (`--quick`: none).
 */
const MIN_NS = BigInt(size(200_000_000, 0));

async function measure(read: (dst: Uint8Array) => Promise<void>, len: number, bytes: number): Promise<number> {
  const dst = new Uint8Array(len);
  for (let i = 0; i < 20; i++) await read(dst);
  const batch = Math.max(20, Math.floor(bytes / len));
  let n = 0;
  const t0 = process.hrtime.bigint();
  let t = t0;
  while (n === 0 || t - t0 < MIN_NS) {
    for (let i = 0; i < batch; i++) await read(dst);
    n += batch;
    t = process.hrtime.bigint();
  }
  return (n * len) / Number(t - t0); // bytes per ns = GB/s
}

/** Run the fallback benchmark and print its table. */
export async function run(): Promise<void> {
  const { space, blobFd, dispose } = frontEndGuest();
  // B after eager propagation: the blob in its memory table (its own mmap of the fd).
  const propagated = new MemoryTable();
  propagated.addRegion({
    guestPhysAddr: REGION_BASE,
    memorySize: BLOB_LEN,
    userspaceAddr: SYNTHETIC_USER_BASE + REGION_BASE,
    mmapOffset: 0n,
    fd: dupCloexec(blobFd),
  });
  const [fe, be] = socketPair();
  const handler = new BackendRequestHandler(new Endpoint(fe, { maxPayload: MEM_RW_MAX_PAYLOAD }), {
    dialect: UPSTREAM,
    replyAck: true,
    backendSendFd: false,
    sharedMemory: sharedMemoryPort({ memory: space }),
  });
  void handler.start();
  const client = new BackendClient(new Endpoint(be, { maxPayload: MEM_RW_MAX_PAYLOAD }), {
    replyAck: true,
    shmem: false,
    sendFd: false,
    config: false,
    memRw: true,
    isRunning: () => true,
  });
  const emptyTable = new MemoryTable();
  const remote = new FallbackMemory(emptyTable, client);
  const addr = guestAddress(REGION_BASE);
  const rows: (string | number)[][] = [];
  for (const size of [4096, 65536]) {
    const direct: number[] = [];
    const memRead: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      direct.push(await measure((dst) => propagated.read(addr, dst), size, DIRECT_BYTES));
      memRead.push(await measure((dst) => remote.read(addr, dst), size, MEM_READ_BYTES));
    }
    const d = median(direct);
    const m = median(memRead);
    rows.push([`${size / 1024} KiB`, d.toFixed(2), m.toFixed(3), (m / d).toFixed(3)]);
  }
  // The same reads with the front-end in its own process, as in a real deployment.
  const cross = await crossProcessReads(addr, [4096, 65536], ROUNDS, (read, len) => measure(read, len, MEM_READ_BYTES));
  for (const [i, len] of [4096, 65536].entries()) {
    const c = cross.get(len);
    const range = (xs: number[]): string => `${median(xs).toFixed(3)} (${Math.min(...xs).toFixed(3)}–${Math.max(...xs).toFixed(3)})`;
    const ratios = (c?.buffer ?? [0]).map((b, r) => b / (c?.memRead[r] ?? 1)); // measured seconds apart in the same round
    rows[i]?.push(range(c?.memRead ?? [0]), range(c?.buffer ?? [0]), range(ratios), range(c?.raw ?? [0]));
  }
  note(
    `B reads A's blob in A's shared memory region, GB/s (median of ${ROUNDS} interleaved rounds; cross-process: median (min–max)); target MEM_READ >= 2 GB/s at 64 KiB`,
  );
  note(
    "direct: the blob propagated into B's memory table; MEM_READ: back-end and front-end handler in one process over a socketpair; cross-process: the handler in its own process",
  );
  note(
    "MEM_READ: revision 1, the data in the reply; rev 2: the data through the front-end's shared buffer (docs/shmem.md#shared-data-buffer-revision-2); cross raw: revision 1 on a bare endpoint (no BackendClient / FallbackMemory layers)",
  );
  table(
    ["size", "direct (propagated)", "MEM_READ", "MEM_READ ÷ direct", "MEM_READ cross-process", "rev 2 cross-process", "rev 2 ÷ rev 1 per round", "cross raw"],
    rows,
  );
  client.close();
  handler.close();
  emptyTable.dispose();
  propagated.dispose();
  dispose();
  await runMapLatency();
}

/**
 * SHMEM_MAP end to end: a back-end maps (and unmaps) a 64 KiB memfd through the vhostkit front-end,
 * which then propagates the mapping to N other back-ends (RAM blk devices in their own processes)
 * and waits for their ADD_MEM_REG / REM_MEM_REG acks. Median latency of map + unmap per N.
 */
export async function runMapLatency(): Promise<void> {
  const PAIRS = Number(process.env["VHOSTKIT_BENCH_MAP_PAIRS"] ?? size(200, 6));
  const WARM = Math.min(size(20, 1), PAIRS - 1);
  // VHOSTKIT_BENCH_MAP_OTHERS=0,1: some of the rows (profiling one configuration alone).
  const configs = (process.env["VHOSTKIT_BENCH_MAP_OTHERS"] ?? "0,1,4").split(",").map(Number);
  const dir = mkdtempSync(join(tmpdir(), "vhostkit-bench-map-"));
  const children: ReturnType<typeof spawn>[] = [];
  const rows: (string | number)[][] = [];
  const phaseRows: (string | number)[][] = [];
  try {
    for (const [run, others] of configs.entries()) {
      const guest = new Guest();
      const started: Promise<unknown>[] = [];
      const devices = [];
      for (let i = 0; i < others; i++) {
        const sock = join(dir, `blk-${run}-${i}.sock`);
        const child = spawn(process.execPath, [join(root, "packages/backend/examples/ram-blk.mjs"), "--socket", sock, "--size-mib", "1"], {
          stdio: ["ignore", "pipe", "inherit"],
        });
        children.push(child);
        await new Promise<void>((resolve) => createInterface({ input: child.stdout! }).on("line", (l) => l.startsWith("listening") && resolve()));
        const d = await guest.addDevice({ socketPath: sock });
        started.push(d.start({ features: 0n, queues: [0] }));
        devices.push(d);
      }
      await Promise.all(started);
      let client: BackendChannel | undefined;
      let running!: () => void;
      const isRunning = new Promise<void>((r) => (running = r));
      const [fe, be] = socketPair();
      const dispatcher = new Dispatcher(new Endpoint(be), {
        features: 0n,
        queueCount: 1,
        maxQueueSize: 64,
        processQueue() {},
        shmemRegions: () => [{ shmid: 1, size: 1n << 20n }],
        start(ctx) {
          client = ctx.client;
          running();
        },
      });
      void dispatcher.run();
      const mapper = await guest.addDevice({ endpoint: new Endpoint(fe) });
      await mapper.start({ features: 0n, queues: [0] });
      await isRunning;
      const fd = sealedMemfd("bench-map", 1n << 16n);
      const args = { shmid: 1, shmOffset: 0n, len: 1n << 16n, writable: true };
      // Map and unmap timed apart (each up to its propagation acked): the first of each on this
      // fresh connection, then the steady state after WARM pairs.
      // Phases: the reply reached the back-end, then every propagation acked (the mapper's own
      // ADD_MEM_REG / REM_MEM_REG included: the front-end propagates to it too).
      const maps: number[] = [];
      const unmaps: number[] = [];
      const phases: number[][] = [[], [], [], []];
      const us = (a: bigint, b: bigint): number => Number(b - a) / 1000;
      for (let i = 0; i < PAIRS; i++) {
        const t0 = process.hrtime.bigint();
        await client!.shmemMap(args, fd);
        const tr = process.hrtime.bigint();
        await mapper.propagationSettled();
        for (const d of devices) await d.propagationSettled();
        const t1 = process.hrtime.bigint();
        await client!.shmemUnmap(args);
        const tu = process.hrtime.bigint();
        await mapper.propagationSettled();
        for (const d of devices) await d.propagationSettled();
        const t2 = process.hrtime.bigint();
        maps.push(us(t0, t1));
        unmaps.push(us(t1, t2));
        for (const [k, v] of [us(t0, tr), us(tr, t1), us(t1, tu), us(tu, t2)].entries()) phases[k]?.push(v);
      }
      closeFd(fd);
      const steady = (xs: number[]): number[] => xs.slice(Math.min(WARM, xs.length - 1));
      const spread = (xs: number[]): string => `${median(xs).toFixed(0)} (${Math.min(...xs).toFixed(0)}–${Math.max(...xs).toFixed(0)})`;
      const pairs = maps.map((m, i) => m + (unmaps[i] ?? 0));
      rows.push([
        others,
        median(steady(pairs)).toFixed(0),
        (maps[0] ?? 0).toFixed(0),
        spread(steady(maps)),
        (unmaps[0] ?? 0).toFixed(0),
        spread(steady(unmaps)),
      ]);
      phaseRows.push([others, ...phases.map((xs) => `${(xs[0] ?? 0).toFixed(0)} / ${median(steady(xs)).toFixed(0)}`)]);
      await guest.close();
      dispatcher.close();
    }
  } finally {
    for (const c of children) c.kill("SIGTERM");
    rmSync(dir, { recursive: true, force: true });
  }
  note(
    `\nSHMEM_MAP + SHMEM_UNMAP end to end (reply, then propagation acked by every other back-end), µs; steady: median (min–max) of ${PAIRS - WARM} after ${WARM}`,
  );
  note("first: the first SHMEM_MAP and SHMEM_UNMAP on a fresh back-end connection (rows after the first run in a process whose JIT is already warm)");
  table(["other back-ends", "map + unmap µs", "first map µs", "map µs", "first unmap µs", "unmap µs"], rows);
  note(
    "the same, by phase: first / steady median µs; reply = the back-end has the reply, propagated = then every ADD_MEM_REG / REM_MEM_REG acked (the mapper's own included)",
  );
  table(["other back-ends", "map reply", "map propagated", "unmap reply", "unmap propagated"], phaseRows);
}
