/**
 * One dirty log shared by several back-end processes (docs/protocol.md#dirty-page-logging): QEMU
 * hands the same log memfd to every vhost device of a VM, so two back-ends set bits in the same
 * bytes at the same time while the front-end reads and clears them. Two real processes, each
 * mapping the log with the back-end's DirtyLog, mark the even and the odd pages of the same bytes
 * in step while this process takes the log over and over with DirtyPageLog.takeDirtyPages: every
 * page comes out exactly once. A plain read-modify-write of a log byte loses the other process's
 * bits here; a read that is not atomic with its clear loses or repeats pages.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { sealedMemfd, closeFd } from "@vhostkit/transport/sys";
import { DirtyPageLog, LOG_PAGE_SIZE } from "../src/index.js";

const PACKAGE = import.meta.url.slice(0, import.meta.url.lastIndexOf("/test/") + 1);
const MARKER = fileURLToPath(new URL("test/fixtures/dirty-log-marker.mjs", PACKAGE));
const PAGES = 1 << 18; // 32 KiB of log
const SEGMENT = 1024; // pages both processes mark between two barriers: 128 bytes
const LOGS = 4; // logs in turn, as one front-end migrating again and again

/** Runs a marker of `parity` on `log` and `control`; resolves with its exit code and stderr. */
function marker(parity: number, log: DirtyPageLog, control: number): Promise<{ code: number | null; err: string }> {
  const child = spawn(process.execPath, [MARKER, String(parity), String(log.size), String(SEGMENT)], {
    stdio: ["ignore", "ignore", "pipe", log.fd, control],
  });
  let err = "";
  child.stderr?.on("data", (b: Buffer) => (err += b.toString()));
  return new Promise((resolve) => child.once("close", (code) => resolve({ code, err })));
}

test(`two back-end processes mark the even and odd pages of one log's bytes concurrently (${PAGES} pages, ${LOGS} logs in turn) while the front-end takes it: every page exactly once`, {
  timeout: 120_000,
}, async () => {
  for (let round = 0; round < LOGS; round++) {
    const log = DirtyPageLog.create(BigInt(PAGES * LOG_PAGE_SIZE));
    const control = sealedMemfd("vhostkit-test-barrier", 4096n);
    assert.ok(control >= 0, "control memfd");
    const seen = new Uint8Array(PAGES);
    const take = (): void => {
      for (const gpa of log.takeDirtyPages()) seen[gpa / LOG_PAGE_SIZE] = (seen[gpa / LOG_PAGE_SIZE] as number) + 1;
    };
    try {
      let done = false;
      const markers = Promise.all([marker(0, log, control), marker(1, log, control)]).finally(() => (done = true));
      while (!done) {
        take();
        await new Promise((r) => setImmediate(r));
      }
      for (const m of await markers) assert.equal(m.code, 0, m.err);
      take();
      const missing: number[] = [];
      const repeated: number[] = [];
      for (let p = 0; p < PAGES; p++) {
        if (seen[p] === 0) missing.push(p);
        if ((seen[p] as number) > 1) repeated.push(p);
      }
      assert.deepEqual(
        { missing: missing.length, repeated: repeated.length },
        { missing: 0, repeated: 0 },
        `log ${round}: first missing pages ${missing.slice(0, 8)}`,
      );
    } finally {
      closeFd(control);
      log.dispose();
    }
  }
});
