/**
 * `vhost-user-device trace` between the front-end library and vhostkit's own back-end (a second
 * process with VIRTIO Shared Memory Regions that maps a blob once running): every message relayed
 * both ways, the back-end channel through the proxy's own socketpair (SHMEM_MAP with its fd and
 * reply), replies with latencies, the summary last; the text and `--out` forms; a back-end that is
 * not there is reported by errno name.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Guest, RawDriver } from "@vhostkit/frontend";
import { connect, isTransportError } from "@vhostkit/transport";
import { LineProcess } from "./helpers/line-process.js";
import { cliCommand } from "./helpers/run-cli.js";
import type { TraceRecord as Rec, TraceSummary } from "../src/trace/trace-log.js";

const FIXTURE = fileURLToPath(new URL("./fixtures/own-backend.mjs", import.meta.url));
const cleanups: (() => Promise<unknown>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "vhostkit-trace-"));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** The shmem back-end in its own process, listening. */
async function backend(dir: string): Promise<LineProcess> {
  const be = new LineProcess(process.execPath, [FIXTURE, "--socket", join(dir, "dev.sock"), "--device", "shmem"]);
  cleanups.push(() => be.stop());
  await be.line((l) => l.includes('"listening"'));
  return be;
}

/** A front-end session through the proxy at `proxy`: negotiate, start queue 0, wait for the back-end's map, close. */
async function session(proxy: string, be: LineProcess): Promise<void> {
  const guest = new Guest();
  try {
    // The proxy's socket appears once it listens: connect retries until then.
    const device = await guest.addDevice({ socketPath: proxy, retry: { attempts: 400, delayMs: 25 } });
    assert.deepEqual(
      device.info.shmem.map((r) => r.shmid),
      [1, 4],
      "GET_SHMEM_CONFIG went through the proxy",
    );
    await RawDriver.attach(device);
    await be.line((l) => l.includes('"mapped"'));
    await device.close();
  } finally {
    await guest.close();
  }
}

test("--json: every message both ways, SET_BACKEND_REQ_FD swapped for the proxy's channel, SHMEM_MAP with its fd and reply, latencies, the summary last", async () => {
  const dir = await tempDir();
  const be = await backend(dir);
  const proxy = join(dir, "proxy.sock");
  const trace = new LineProcess(...cliCommand("trace", "--listen", proxy, "--connect", join(dir, "dev.sock"), "--json"));
  cleanups.push(() => trace.stop());
  await session(proxy, be);
  const exit = await trace.exited;
  assert.equal(exit.code, 0, trace.stderr);
  assert.match(trace.stderr, /^vhost-user-device: tracing .*proxy\.sock -> .*dev\.sock\n$/);
  const objects = trace.lines.map((l) => JSON.parse(l) as Rec & { summary?: TraceSummary });
  const summary = objects.pop()?.summary;
  assert.ok(summary !== undefined, "the summary is the last line");
  const recs = objects as Rec[];
  assert.equal(summary.messages, recs.length);
  assert.deepEqual(
    recs.slice(0, 2).map((r) => [r.name, r.from, r.reply]),
    [
      ["GET_FEATURES", "frontend", false],
      ["GET_FEATURES", "backend", true],
    ],
  );
  assert.ok((recs[1]?.latencyMs ?? -1) >= 0, "the reply has a latency");
  assert.ok(
    recs.every((r, i) => i === 0 || r.t >= (recs[i - 1] as Rec).t),
    "in time order",
  );
  const setup = recs.find((r) => r.name === "SET_BACKEND_REQ_FD" && !r.reply);
  assert.equal(setup?.fds, 1, "SET_BACKEND_REQ_FD carries one fd");
  const map = recs.find((r) => r.channel === "backend" && r.name === "BACKEND_SHMEM_MAP" && !r.reply);
  assert.ok(map !== undefined, "the back-end channel was relayed");
  assert.deepEqual(
    [map.from, map.fds, (map.value as { shmid: number; shmOffset: string }).shmid, (map.value as { shmOffset: string }).shmOffset],
    ["backend", 1, 1, "0x10000"],
  );
  const mapReply = recs.find((r) => r.channel === "backend" && r.name === "BACKEND_SHMEM_MAP" && r.reply);
  assert.deepEqual([mapReply?.from, mapReply?.value], ["frontend", "0x0"], "the front-end accepted the map through the proxy");
  assert.ok(mapReply?.latencyMs !== undefined);
  for (const name of ["GET_SHMEM_CONFIG", "ADD_MEM_REG", "SET_VRING_KICK", "GET_VRING_BASE"])
    assert.ok(
      recs.some((r) => r.name === name),
      name,
    );
  assert.ok(summary.fds >= 4, `fds relayed: ${summary.fds}`);
  assert.match(summary.end, /front-end closed the connection/);
});

test("text and --out FILE: one line a message, the summary table at the end", async () => {
  const dir = await tempDir();
  const be = await backend(dir);
  const proxy = join(dir, "proxy.sock");
  const out = join(dir, "trace.txt");
  const trace = new LineProcess(...cliCommand("trace", "--listen", proxy, "--connect", join(dir, "dev.sock"), "--out", out));
  cleanups.push(() => trace.stop());
  await session(proxy, be);
  assert.equal((await trace.exited).code, 0, trace.stderr);
  assert.deepEqual(trace.lines, [], "nothing on stdout with --out");
  const text = await readFile(out, "utf8");
  assert.match(text, /^ +\d+\.\d{3} ms {2}main {5}F->B {2}GET_FEATURES +flags=0x1\(VERSION_1\) {2}size=0 {2}fds=0$/m);
  assert.match(text, /backend {2}B->F {2}BACKEND_SHMEM_MAP +flags=0x9\(VERSION_1\|NEED_REPLY\) {2}size=40 {2}fds=1 {2}\{"shmid":1/);
  assert.match(text, /^summary: \d+ messages, \d+ payload bytes, \d+ fds in [\d.]+ ms; the front-end closed the connection/m);
  assert.match(text, /^slowest round trips$/m);
});

test("a back-end that is not there: the proxy says so by errno name and exits 1", async () => {
  const dir = await tempDir();
  const proxy = join(dir, "proxy.sock");
  const trace = new LineProcess(...cliCommand("trace", "--listen", proxy, "--connect", join(dir, "missing.sock")));
  cleanups.push(() => trace.stop());
  const frontend = await connect(proxy, { retry: { attempts: 400, delayMs: 25 } });
  try {
    const exit = await trace.exited;
    assert.equal(exit.code, 1);
    assert.match(trace.stderr, /vhost-user-device: connect .*missing\.sock: no such file or directory \(ENOENT\)\n$/);
    await assert.rejects(frontend.recv(), (e: unknown) => isTransportError(e) && e.code === "EOF", "the front-end sees the connection close");
  } finally {
    frontend.close();
  }
});
