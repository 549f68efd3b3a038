/**
 * Issue 9's end-to-end test: two vhostkit-gpu back-ends A and B under one front-end, real processes.
 * A maps a host blob into its shmid 1; the driver fills it with pixels through the region; then B
 * gets a 2D resource whose backing pages lie in A's shared memory region and is asked to
 * TRANSFER_TO_HOST_2D + flush: B's scanout (its PNG) must hold the blob's pixels. Three ways for B to
 * reach A's memory: eager propagation, MEM_READ/MEM_WRITE only, and auto with B's slots exhausted.
 * Then A unmaps while B still holds the old range: B's transfer fails with an error response,
 * nothing crashes.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { decode } from "fast-png";
import { Guest } from "@vhostkit/frontend";
import { GpuDriver, GpuResponseError } from "../../device/src/gpu/driver.js";
import { encode, FORMAT_BGRX } from "../../device/src/gpu/protocol.js";

const APP = fileURLToPath(new URL("..", import.meta.url));
const BIN = join(APP, "bin", "vhostkit-gpu.mjs");
const W = 64;
const H = 32;

function ensureBuilt(): void {
  if (typeof (globalThis as { Bun?: unknown }).Bun !== "undefined") return;
  const r = spawnSync(join(APP, "..", "..", "node_modules", ".bin", "tsc"), ["-b", APP], { encoding: "utf8" });
  assert.equal(r.status, 0, `tsc -b apps/gpu-backend: ${r.stdout}${r.stderr}`);
}

interface Proc {
  child: ChildProcess;
  socket: string;
  shots: string;
  event(match: (e: Record<string, unknown>) => boolean): Promise<Record<string, unknown>>;
}

function start(dir: string, name: string, args: readonly string[]): Promise<Proc> {
  const socket = join(dir, `${name}.sock`);
  const shots = join(dir, `${name}-shots`);
  const child = spawn(process.execPath, [BIN, "--socket", socket, "--screenshot-dir", shots, "--events", "--shm-size", "4M", ...args], { stdio: ["ignore", "pipe", "pipe"] });
  const kill = () => child.kill("SIGKILL");
  process.once("exit", kill);
  child.once("exit", () => process.off("exit", kill));
  const events: Record<string, unknown>[] = [];
  let waiters: { match: (e: Record<string, unknown>) => boolean; resolve: (e: Record<string, unknown>) => void }[] = [];
  createInterface({ input: child.stdout! }).on("line", (l) => {
    const e = JSON.parse(l) as Record<string, unknown>;
    events.push(e);
    waiters = waiters.filter((w) => (w.match(e) ? (w.resolve(e), false) : true));
  });
  const event = (match: (e: Record<string, unknown>) => boolean) => {
    const seen = events.find(match);
    return seen !== undefined ? Promise.resolve(seen) : new Promise<Record<string, unknown>>((resolve) => waiters.push({ match, resolve }));
  };
  return event((e) => e["event"] === "listening").then(() => ({ child, socket, shots, event }));
}

async function stop(p: Proc): Promise<void> {
  if (p.child.exitCode !== null) return;
  const exited = new Promise((r) => p.child.once("exit", r));
  p.child.kill("SIGTERM");
  await exited;
}

/** BGRX pixels with a pattern that no two rows share. */
function pixels(): Uint8Array {
  const p = new Uint8Array(W * H * 4);
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) p.set([(x * 4) & 0xff, (y * 8) & 0xff, (x ^ y) & 0xff, 0xff], (y * W + x) * 4);
  return p;
}

describe("two GPU back-ends: B scans out a resource whose backing lies in A's shared memory region", () => {
  for (const mode of ["propagate", "mem-rw", "auto"] as const) {
    test(`${mode}: B's screenshot holds A's blob pixels; after A's unmap B's transfer fails cleanly`, { timeout: 60_000 }, async () => {
      ensureBuilt();
      const dir = mkdtempSync(join(tmpdir(), "vhostkit-gpu-cross-"));
      const a = await start(dir, "a", []);
      const b = await start(dir, "b", mode === "propagate" ? [] : mode === "mem-rw" ? ["--mem-rw"] : ["--mem-rw", "--max-slots", "1"]);
      const guest = new Guest();
      try {
        const served: string[] = [];
        const devB = await guest.addDevice({ socketPath: b.socket, sharedMemoryPolicy: mode, memRw: mode !== "propagate", onBackendRequest: (o) => served.push(`${o.name} ${o.ok}`) });
        const gpuB = await GpuDriver.attach(guest, devB);
        const devA = await guest.addDevice({ socketPath: a.socket });
        const gpuA = await GpuDriver.attach(guest, devA);
        const size = BigInt(W * H * 4);
        await gpuA.createMappedBlob(1, size, 0n);
        const blob = gpuA.regionAddress(0n);
        const src = pixels();
        await gpuA.writeRegion(0n, src);
        await devB.propagationSettled();

        // B: a 2D resource backed by A's region, transferred and flushed to its scanout 0.
        const rect = { x: 0, y: 0, width: W, height: H };
        await gpuB.command(encode.create2d(7, FORMAT_BGRX, W, H));
        await gpuB.command(encode.attachBacking(7, [{ addr: blob, len: Number(size) }]));
        await gpuB.command(encode.transfer(7, rect, 0n));
        await gpuB.command(encode.setScanout(0, 7, rect));
        await gpuB.command(encode.flush(7, rect));
        const shot = await b.event((e) => e["event"] === "screenshot" && e["resourceId"] === 7);
        const png = decode(readFileSync(String(shot["file"])));
        assert.deepEqual([png.width, png.height], [W, H]);
        const rgba = png.data as Uint8Array;
        for (const [x, y] of [[0, 0], [13, 5], [W - 1, H - 1], [40, 20]] as const) {
          const i = (y * W + x) * 4;
          const s = src.subarray(i, i + 4); // B, G, R, X
          assert.deepEqual([rgba[i], rgba[i + 1], rgba[i + 2]], [s[2], s[1], s[0]], `pixel ${x},${y} came from A's blob`);
        }

        if (mode === "propagate") assert.ok(!served.some((x) => x.startsWith("BACKEND_MEM_READ")), "direct access through the propagated mapping");
        else assert.ok(served.includes("BACKEND_MEM_READ true"), `B read the backing through MEM_READ (${served.join(", ")})`);

        // A unmaps; B still points at the old range.
        await gpuA.command(encode.unmapBlob(1));
        await devB.propagationSettled();
        await assert.rejects(gpuB.command(encode.transfer(7, rect, 0n)), (e: unknown) => e instanceof GpuResponseError, "an error response, not a crash");
        assert.equal(b.child.exitCode, null, "B still runs");
        assert.equal(a.child.exitCode, null, "A still runs");
      } finally {
        await guest.close();
        await stop(a);
        await stop(b);
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});
