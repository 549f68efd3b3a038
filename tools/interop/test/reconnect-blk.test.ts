/**
 * Surviving a back-end restart (docs/protocol.md#inflight-tracking-and-reconnect), all real
 * processes: `vhost-user-device blk --workload --reconnect` at queue depth 32 writes patterns,
 * reads them back and verifies every byte while its back-end is killed with SIGKILL and started
 * again on the same socket and disk. Against the RAM blk example (INFLIGHT_SHMFD: the restarted
 * device resubmits what its predecessor held) three times, on split rings (`--no-packed`) and on
 * packed rings (`--packed`: the packed inflight layout), and against qemu-storage-daemon 7.2
 * (no INFLIGHT_SHMFD: the front-end lays the outstanding chains out again) twice. Every block
 * verifies, every request completes once: the front-end's count of chains made available equals
 * the avail index the last back-end reports (GET_VRING_BASE), and no used element came back twice
 * (the driver would have failed the device).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { startQsd, type QsdHandle } from "@vhostkit/peers/qsd";
import { LineProcess, withDeadline } from "./helpers/processes.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const RAM_BLK = join(ROOT, "packages/backend/examples/ram-blk.mjs");
// The CLI is a Bun program: under Node it runs with the repository's own Bun.
const BUN = "bun" in process.versions ? process.execPath : join(ROOT, "node_modules/.bin/bun");
const CLI = join(ROOT, "apps/device/src/main.ts");

/** One JSON line of the workload, or undefined. */
function record(line: string): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(line);
    return typeof v === "object" && v !== null ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Runs the workload for `seconds` on `socket` (with the CLI options `extra`) and, `kills` times,
 * once it has run a while since the last reconnect, calls `restart` (kill the back-end, start it
 * again).
 * @returns the summary and the workload's output.
 */
async function workloadWithRestarts(
  socket: string,
  seconds: number,
  kills: number,
  restart: () => Promise<void>,
  extra: readonly string[] = [],
): Promise<{ summary: Record<string, number>; out: string }> {
  const run = new LineProcess(BUN, [
    CLI,
    "blk",
    "--socket",
    socket,
    "--workload",
    String(seconds),
    "--qd",
    "32",
    "--write-ratio",
    "0.5",
    "--span-mib",
    "8",
    "--reconnect",
    "--json",
    ...extra,
  ]);
  try {
    for (let k = 0; k < kills; k++) {
      // Two progress lines after the previous reconnect: load is running again.
      await withDeadline(
        run.line((l) => (record(l)?.["reconnects"] as number | undefined) === k && ((record(l)?.["t"] as number | undefined) ?? 0) >= 2 + 3 * k),
        30_000,
        `progress before kill ${k + 1}`,
      );
      await restart();
      await withDeadline(
        run.line((l) => record(l)?.["event"] === "reconnected" && record(l)?.["count"] === k + 1),
        30_000,
        `reconnect ${k + 1}`,
      );
    }
    const code = await withDeadline(run.exited, seconds * 1000 + 30_000, "the workload to end");
    const out = run.lines.join("\n");
    assert.equal(code, 0, `${out}\n${run.stderr}`);
    const summaryStart = run.lines.findIndex((l) => l.startsWith("{") && l.trim() === "{");
    const summary = (JSON.parse(run.lines.slice(summaryStart).join("\n")) as { summary: Record<string, number> }).summary;
    return { summary, out };
  } finally {
    await run.stop();
  }
}

for (const packed of [false, true]) {
  test(`the RAM blk device killed with SIGKILL and restarted 3 times at QD 32 on ${packed ? "packed" : "split"} rings: every block verified, every request once (INFLIGHT_SHMFD)`, {
    timeout: 110_000,
  }, async () => {
    const dir = mkdtempSync(join(tmpdir(), "vhostkit-reconnect-ramblk-"));
    const socket = join(dir, "blk.sock");
    const lives: LineProcess[] = [];
    const start = async (): Promise<void> => {
      // Each request takes 1 ms: a kill finds the device holding requests, which its successor resubmits.
      const dev = new LineProcess(process.execPath, [
        RAM_BLK,
        "--socket",
        socket,
        "--size-mib",
        "8",
        "--file",
        join(dir, "disk.img"),
        "--events",
        "--latency-ms",
        "1",
      ]);
      lives.push(dev);
      await withDeadline(dev.line("listening"), 20_000, "the RAM blk device to listen");
    };
    try {
      await start();
      const { summary, out } = await workloadWithRestarts(
        socket,
        14,
        3,
        async () => {
          const dev = lives[lives.length - 1]!;
          dev.child.kill("SIGKILL");
          await withDeadline(dev.exited, 10_000, "the killed device to exit");
          await start();
        },
        [packed ? "--packed" : "--no-packed"],
      );
      assert.equal(summary["mismatches"], 0, out);
      assert.equal(summary["errors"], 0, out);
      assert.equal(summary["reconnects"], 3, out);
      assert.ok((summary["verifiedReads"] ?? 0) > 0 && (summary["verifiedBlocks"] ?? 0) > 0, out);
      assert.equal(summary["deviceBase"], summary["driverBase"], "the last back-end consumed exactly the chains the driver made available");
      // Device side: every life after the first found the inflight area (INFLIGHT_SHMFD negotiated)
      // and reports how many chains its predecessor left in flight; none of them completed twice.
      const resubmitted = lives.slice(1).map((l) =>
        l.lines
          .find((x) => x.startsWith("event inflight queue 0"))
          ?.split(" ")
          .at(-1),
      );
      assert.ok(
        resubmitted.every((n) => n !== undefined && Number(n) >= 0 && Number(n) <= 32) && resubmitted.some((n) => Number(n) > 0),
        `${resubmitted.join()}\n${lives.map((l) => l.lines.join("\n")).join("\n--\n")}`,
      );
      assert.ok(lives.every((l) => !l.lines.some((x) => x.includes("queue-broken"))));
    } finally {
      for (const l of lives) await l.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test("qemu-storage-daemon 7.2 (no INFLIGHT_SHMFD) killed and restarted on the same socket twice at QD 32: every block verified, every request once", {
  timeout: 110_000,
}, async () => {
  const dir = mkdtempSync(join(tmpdir(), "vhostkit-reconnect-qsd-"));
  const socketPath = join(dir, "qsd.sock");
  const image = join(dir, "disk.raw");
  writeFileSync(image, "");
  truncateSync(image, 8 << 20);
  let qsd: QsdHandle | undefined;
  try {
    qsd = await startQsd({ socketPath, image });
    const { summary, out } = await workloadWithRestarts(socketPath, 12, 2, async () => {
      await qsd?.kill();
      qsd = await startQsd({ socketPath, image });
    });
    assert.equal(summary["mismatches"], 0, out);
    assert.equal(summary["errors"], 0, out);
    assert.equal(summary["reconnects"], 2, out);
    assert.ok(/"inflight": ?false/.test(out), "qsd 7.2 does not offer INFLIGHT_SHMFD");
    assert.equal(summary["deviceBase"], summary["driverBase"]);
  } finally {
    await qsd?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
