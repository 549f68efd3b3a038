/**
 * `vhost-user-device trace` between QEMU 11.1 (`vhost-user-test-device-pci`) and a back-end: the
 * proxy relays every message and fd both ways, the back-end channel included, and the guest side
 * still works — QEMU sizes the GPU sample's shared memory region from GET_SHMEM_CONFIG (the setup of
 * qemu-11-gpu.test.ts), and SeaBIOS boots from the RAM blk example while it maps and unmaps a blob
 * (the setup of qemu-11-shmem.test.ts). The trace shows GET_SHMEM_CONFIG, SHMEM_MAP and
 * SHMEM_UNMAP with their fds and replies (docs/shmem.md#map-and-unmap-requests).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { peerCommand } from "@vhostkit/peers/peers";
import { startCli, type CliRun } from "./helpers/cli.js";
import { LineProcess, Qmp, withDeadline } from "./helpers/processes.js";
import { vhostUserGpuMachine } from "./helpers/qemu.js";

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));
const GPU_APP = here("../../../apps/gpu-backend/");
const BLK_DEVICE = here("./fixtures/shmem-blk-device.mjs");
const BOOT = here("./fixtures/boot-sector.hex");

interface Rec {
  readonly channel: "main" | "backend";
  readonly from: "frontend" | "backend";
  readonly name: string;
  readonly reply: boolean;
  readonly flagNames: string[];
  readonly fds: number;
  readonly latencyMs?: number;
  readonly value?: unknown;
  readonly summary?: { readonly messages: number; readonly end: string };
}

/** Starts the proxy from `proxy` to `backendSocket`, writing JSON lines to `out`; resolves once it listens. */
async function startTrace(proxy: string, backendSocket: string, out: string): Promise<CliRun> {
  const run = startCli(["trace", "--listen", proxy, "--connect", backendSocket, "--json", "--out", out]);
  try {
    await withDeadline(run.stderrMatch(/vhost-user-device: tracing /), 20_000, "the trace proxy listening");
  } catch (err) {
    run.kill();
    throw err;
  }
  return run;
}

/** The trace's records and its summary, once the proxy has exited 0 (QEMU gone). */
async function traceOf(run: CliRun, out: string): Promise<{ readonly recs: Rec[]; readonly summary: NonNullable<Rec["summary"]> }> {
  const r = await withDeadline(run.result, 20_000, "the trace proxy to end with QEMU");
  assert.equal(r.code, 0, r.stderr);
  const recs = readFileSync(out, "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as Rec);
  const summary = recs.pop()?.summary;
  assert.ok(summary !== undefined, "the summary is the last line");
  assert.equal(summary.messages, recs.length);
  return { recs, summary };
}

const find = (recs: readonly Rec[], channel: Rec["channel"], name: string, reply: boolean) =>
  recs.filter((r) => r.channel === channel && r.name === name && r.reply === reply);

test("trace between QEMU 11.1 and vhostkit-gpu: QEMU still sizes shmid 1 and BAR 4 from GET_SHMEM_CONFIG; the trace has it with its reply", {
  timeout: 100_000,
}, async () => {
  const [program, ...prefix] = peerCommand("sid", "qemu-system-x86_64"); // not fetched: fails here, before anything starts
  if (typeof (globalThis as { Bun?: unknown }).Bun === "undefined") {
    const b = spawnSync(here("../../../node_modules/.bin/tsc"), ["-b", GPU_APP], { encoding: "utf8" });
    assert.equal(b.status, 0, `${b.stdout}${b.stderr}`);
  }
  const dir = mkdtempSync(join(tmpdir(), "vhostkit-trace-gpu-"));
  const socket = join(dir, "gpu.sock");
  const proxy = join(dir, "proxy.sock");
  const out = join(dir, "trace.jsonl");
  const gpu = new LineProcess(process.execPath, [
    join(GPU_APP, "bin/vhostkit-gpu.mjs"),
    "--socket",
    socket,
    "--shm-size",
    "32M",
    "--events",
    "--once",
    "--sealed-memory",
  ]);
  let trace: CliRun | undefined;
  let qemu: LineProcess | undefined;
  try {
    await withDeadline(gpu.line('"event":"listening"'), 20_000, "listening vhostkit-gpu");
    trace = await startTrace(proxy, socket, out);
    qemu = new LineProcess(
      program as string,
      [...prefix, ...vhostUserGpuMachine(proxy, 64, ",id=gpu0"), "-display", "none", "-nodefaults", "-no-reboot", "-serial", "none", "-S", "-qmp", "stdio"],
      { stdin: true },
    );
    const qmp = await withDeadline(Qmp.overStdio(qemu), 30_000, "QMP greeting");
    const size = async (path: string) => BigInt((await qmp.execute("qom-get", { path, property: "size" })) as number | string);
    assert.equal(await size("/machine/peripheral/gpu0/virtio-backend/virtio-shmem-1[0]"), 32n << 20n, "shmid 1 sized through the proxy");
    assert.equal(await size("/machine/peripheral/gpu0/vhost-device-pci-shmembar[0]"), 32n << 20n, "BAR 4 too");
    await qmp.execute("quit");
    assert.equal(await withDeadline(qemu.exited, 20_000, "QEMU exit"), 0, `QEMU exit status\n${qemu.stderr}`);
    const { recs, summary } = await traceOf(trace, out);
    const [query] = find(recs, "main", "GET_SHMEM_CONFIG", false);
    const [answer] = find(recs, "main", "GET_SHMEM_CONFIG", true);
    assert.ok(query !== undefined && answer !== undefined, "GET_SHMEM_CONFIG and its reply");
    assert.match(JSON.stringify(answer.value), /"0x2000000"/, `shmid 1 of 32 MiB in the reply: ${JSON.stringify(answer.value)}`);
    assert.ok(answer.latencyMs !== undefined);
    assert.ok(find(recs, "main", "SET_BACKEND_REQ_FD", false)[0]?.fds === 1, "QEMU's back-end channel went through the proxy's socketpair");
    assert.ok(
      find(recs, "main", "GET_FEATURES", true).every((r) => r.latencyMs !== undefined),
      "every reply matched to its request",
    );
    assert.match(summary.end, /front-end closed the connection/);
    assert.equal(await withDeadline(gpu.exited, 20_000, "vhostkit-gpu exit"), 0, "--once: vhostkit-gpu exits after the proxy left");
  } finally {
    await qemu?.stop();
    trace?.kill();
    await gpu.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("trace between QEMU 11.1 and the RAM blk example: SeaBIOS still boots; SHMEM_MAP (its fd) and SHMEM_UNMAP on the back-end channel with replies 0, the mapping propagated and removed", {
  timeout: 110_000,
}, async () => {
  const [program, ...prefix] = peerCommand("sid", "qemu-system-x86_64");
  const dir = mkdtempSync(join(tmpdir(), "vhostkit-trace-blk-"));
  const image = join(dir, "disk.img");
  const sector = Buffer.from(readFileSync(BOOT, "utf8").trim(), "hex");
  writeFileSync(image, Buffer.concat([sector, Buffer.alloc((1 << 20) - sector.length)]));
  const socket = join(dir, "dev.sock");
  const proxy = join(dir, "proxy.sock");
  const out = join(dir, "trace.jsonl");
  const dev = new LineProcess(process.execPath, [BLK_DEVICE, "--socket", socket, "--image", image, "--shm-size", String(2 << 20)], { stdin: true });
  const step = (name: string) => dev.line((l) => l.includes(`"step":"${name}"`));
  let trace: CliRun | undefined;
  let qemu: LineProcess | undefined;
  try {
    await withDeadline(step("listening"), 20_000, "listening device");
    trace = await startTrace(proxy, socket, out);
    qemu = new LineProcess(program as string, [
      ...prefix,
      "-machine",
      "q35,accel=tcg,memory-backend=mem",
      "-m",
      "128M",
      "-object",
      "memory-backend-memfd,id=mem,size=128M,share=on",
      "-chardev",
      `socket,id=c0,path=${proxy}`,
      "-device",
      "vhost-user-test-device-pci,id=shm0,chardev=c0,virtio-id=2,num_vqs=1,config_size=60",
      "-display",
      "none",
      "-nodefaults",
      "-no-reboot",
      "-serial",
      "stdio",
      "-qmp",
      `unix:${join(dir, "qmp.sock")},server=on,wait=off`,
    ]);
    const failed = dev.line((l) => /"step":"(map-failed|dropped|rejected)"/.test(l)).then((l) => assert.fail(`device: ${l}`));
    await withDeadline(Promise.race([step("mapped"), failed]), 40_000, "SHMEM_MAP through the proxy");
    assert.match(
      await withDeadline(
        qemu.line((l) => /VHOSTKIT-BOOT-(OK|FAIL)/.test(l)),
        60_000,
        "boot marker",
      ),
      /VHOSTKIT-BOOT-OK/,
      "the guest still works through the proxy",
    );
    dev.send("unmap");
    await withDeadline(
      Promise.race([step("unmapped"), dev.line((l) => l.includes('"step":"unmap-failed"')).then((l) => assert.fail(l))]),
      20_000,
      "SHMEM_UNMAP through the proxy",
    );
    const qmp = await withDeadline(Qmp.connect(join(dir, "qmp.sock")), 20_000, "QMP greeting");
    await qmp.execute("quit").catch(() => undefined);
    qmp.close();
    await withDeadline(qemu.exited, 20_000, "QEMU exit");
    const { recs } = await traceOf(trace, out);
    const [map] = find(recs, "backend", "BACKEND_SHMEM_MAP", false);
    const [mapReply] = find(recs, "backend", "BACKEND_SHMEM_MAP", true);
    assert.deepEqual(
      [map?.from, map?.fds, (map?.value as { shmOffset?: string } | undefined)?.shmOffset, (map?.value as { len?: string } | undefined)?.len],
      ["backend", 1, "0x10000", "0x10000"],
      "SHMEM_MAP with its memfd",
    );
    assert.deepEqual([mapReply?.from, mapReply?.value], ["frontend", "0x0"], "QEMU's reply 0");
    assert.ok(mapReply?.latencyMs !== undefined, "with its latency");
    const [unmap] = find(recs, "backend", "BACKEND_SHMEM_UNMAP", false);
    const [unmapReply] = find(recs, "backend", "BACKEND_SHMEM_UNMAP", true);
    assert.deepEqual([unmap?.fds, unmapReply?.value], [0, "0x0"]);
    assert.ok(find(recs, "main", "GET_SHMEM_CONFIG", true).length === 1, "GET_SHMEM_CONFIG answered");
    // QEMU then propagates the mapping into the back-end's table (ADD_MEM_REG with the fd) and takes
    // it out after the unmap. QEMU writes them after its replies, but on the other socket: the
    // proxy relays each socket in order, not the two in one order, so only "after the request" holds.
    const mapAt = recs.indexOf(map as Rec);
    assert.ok(
      recs.slice(mapAt).some((r) => r.name === "ADD_MEM_REG" && !r.reply && r.fds === 1 && (r.value as { memorySize?: string }).memorySize === "0x10000"),
      "ADD_MEM_REG of the mapping",
    );
    assert.ok(
      recs.slice(recs.indexOf(unmap as Rec)).some((r) => r.name === "REM_MEM_REG" && !r.reply && (r.value as { memorySize?: string }).memorySize === "0x10000"),
      "REM_MEM_REG of it after the unmap",
    );
  } finally {
    await qemu?.stop();
    trace?.kill();
    await dev.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
