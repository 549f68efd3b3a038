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
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decode } from "fast-png";
import { Guest } from "@vhostkit/frontend";
import { GpuDriver, GpuResponseError } from "../../device/src/gpu/driver.js";
import { encode, FORMAT_BGRX } from "../../device/src/gpu/protocol.js";
import { GpuProcess, ensureBuilt } from "./helpers/gpu-process.js";

const W = 64;
const H = 32;

/** vhostkit-gpu `name` in `dir` with a 4 MiB region, listening. */
async function start(dir: string, name: string, args: readonly string[], started: GpuProcess[]): Promise<GpuProcess> {
  const p = new GpuProcess(["--shm-size", "4M", ...args], name, dir);
  started.push(p);
  await p.listening();
  return p;
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
      const started: GpuProcess[] = [];
      const guest = new Guest();
      try {
        const a = await start(dir, "a", [], started);
        const b = await start(dir, "b", mode === "propagate" ? [] : mode === "mem-rw" ? ["--mem-rw"] : ["--mem-rw", "--max-slots", "1"], started);
        const served: string[] = [];
        const devB = await guest.addDevice({
          socketPath: b.socket,
          sharedMemoryPolicy: mode,
          memRw: mode !== "propagate",
          onBackendRequest: (o) => served.push(`${o.name} ${o.ok}`),
        });
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
        for (const [x, y] of [
          [0, 0],
          [13, 5],
          [W - 1, H - 1],
          [40, 20],
        ] as const) {
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
        assert.ok(b.running, "B still runs");
        assert.ok(a.running, "A still runs");
      } finally {
        await guest.close().finally(async () => {
          for (const p of started) await p.stop(true);
          rmSync(dir, { recursive: true, force: true });
        });
      }
    });
  }
});
