/**
 * Live migration with a vhostkit device (docs/protocol.md#dirty-page-logging): QEMU 7.2 (TCG) runs
 * Debian 12's Linux with `vhost-user-blk-pci` on the RAM blk example, whose disk is a file written
 * through before each write completes (`--file`); a second QEMU waits with `-incoming unix:...`,
 * connected to a second device process on the same file (it reads the file again when its device
 * starts, after the source stopped its rings). The guest writes a fresh random pattern over the
 * whole 4 MiB disk and reads it back, round after round; the source migrates during round 2 (QMP
 * `migrate`, then `query-migrate` polled until completed), whose read lands after the first pass
 * over guest RAM and whose comparison, from the page cache those reads filled, runs on the
 * destination: pages only the device wrote after QEMU sent them, which reach the destination only
 * through the dirty log (a run whose device dropped every mark failed there with a mismatch,
 * 2026-12-07). Every round verifies. Without LOG_ALL and LOG_SHMFD (`--no-log`) QEMU refuses to
 * migrate.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { buildInitramfs, guestQemuArgs } from "@vhostkit/peers/guest";
import { peerCommand } from "@vhostkit/peers/peers";
import { LineProcess, Qmp, withDeadline } from "./helpers/processes.js";
import { vhostUserBlkMachine } from "./helpers/qemu.js";

const RAM_BLK = fileURLToPath(new URL("../../../packages/backend/examples/ram-blk.mjs", import.meta.url));
const ROUNDS = 4;

// Each round: a fresh pattern written with direct I/O, the page cache dropped, the disk read
// through the page cache (the device writes into those pages; fd 3 keeps /dev/vda open, since the
// last close of a block device drops its page cache), then the comparison from the page cache. Round 2 waits for a line on the console before its read (the test sends it once the
// migration's first pass over guest RAM is done) and before its comparison (sent to the
// destination once the migration completed). From round 2's write until its comparison a background
// loop rewrites 2 MiB of guest RAM over and over, so that with a 1 ms downtime limit the migration
// cannot converge on its own (an idle guest could let it finish during the first pass).
const SCRIPT = `
set -e
exec 3</dev/vda
round=1
while [ $round -le ${ROUNDS} ]; do
  dd if=/dev/urandom of=/tmp/pattern bs=65536 count=64 2>/dev/null
  dd if=/tmp/pattern of=/dev/vda bs=1048576 oflag=direct 2>/dev/null
  echo 3 > /proc/sys/vm/drop_caches
  if [ $round -eq 2 ]; then
    ( while :; do dd if=/dev/zero of=/tmp/dirty bs=65536 count=32 2>/dev/null; done ) &
    dirtier=$!
    echo "VHOSTKIT-ROUND 2 WRITTEN"; read go
  fi
  dd if=/dev/vda of=/dev/null bs=1048576 count=4 2>/dev/null
  echo "VHOSTKIT-ROUND $round CACHED"
  if [ $round -eq 2 ]; then read go; kill $dirtier; fi
  if cmp /tmp/pattern /dev/vda; then echo "VHOSTKIT-ROUND $round VERIFIED"; else echo "VHOSTKIT-ROUND $round MISMATCH"; exit 1; fi
  round=$((round + 1))
done
if dmesg | grep -i -E "I/O error|blk_update_request|virtio_blk.*error"; then echo VHOSTKIT-KERNEL-IO-ERROR; fi
`;

const pause = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** QMP on `path` once QEMU created it (it does so at start-up): connect attempts every 100 ms. */
async function qmpAt(path: string, ms: number): Promise<Qmp> {
  const end = Date.now() + ms;
  for (;;) {
    try {
      return await Qmp.connect(path);
    } catch (err) {
      if (Date.now() > end) throw new Error(`no QMP on ${path} within ${ms} ms: ${String(err)}`);
      await pause(100);
    }
  }
}

/** `query-migrate` every 200 ms until the status is final; returns the last answer. */
async function migrationEnd(qmp: Qmp, ms: number): Promise<{ status: string; "error-desc"?: string }> {
  const end = Date.now() + ms;
  for (;;) {
    const r = (await qmp.execute("query-migrate")) as { status: string; "error-desc"?: string };
    if (r.status === "completed" || r.status === "failed" || r.status === "cancelled") return r;
    if (Date.now() > end) throw new Error(`migration still ${r.status} after ${ms} ms`);
    await pause(200);
  }
}

/** A RAM blk device process on `socket` over `disk`; `extra` flags (e.g. `--no-log`). */
async function device(socket: string, disk: string, extra: readonly string[] = []): Promise<LineProcess> {
  const dev = new LineProcess(process.execPath, [RAM_BLK, "--socket", socket, "--size-mib", "4", "--file", disk, "--sealed-memory", "--events", ...extra]);
  await withDeadline(dev.line("listening"), 20_000, "the RAM blk device to listen");
  return dev;
}

test("QEMU 7.2 live-migrates a Linux guest with a vhostkit vhost-user-blk device to a second QEMU while it writes and verifies; every round verifies (LOG_ALL, LOG_SHMFD)", {
  timeout: 110_000,
}, async () => {
  const [program, ...prefix] = peerCommand("bookworm", "qemu-system-x86_64"); // not fetched: fails here, at once
  const dir = mkdtempSync(join(tmpdir(), "vhostkit-linux-migrate-"));
  const image = buildInitramfs({ out: join(dir, "initramfs.cpio"), modules: ["virtio_pci", "virtio_blk"], script: SCRIPT });
  const disk = join(dir, "disk.img");
  const started: LineProcess[] = [];
  let srcQmp: Qmp | undefined;
  try {
    const srcDev = await device(join(dir, "src.sock"), disk);
    started.push(srcDev);
    const dstDev = await device(join(dir, "dst.sock"), disk);
    started.push(dstDev);
    const qemu = (socket: string, qmp: string, extra: readonly string[]) =>
      new LineProcess(
        program as string,
        [...prefix, ...vhostUserBlkMachine(socket, 256), ...guestQemuArgs(image, "init_on_alloc=0"), "-qmp", `unix:${qmp},server=on,wait=off`, ...extra],
        { stdin: true },
      );
    const src = qemu(join(dir, "src.sock"), join(dir, "src-qmp.sock"), []);
    started.push(src);
    const dst = qemu(join(dir, "dst.sock"), join(dir, "dst-qmp.sock"), ["-incoming", `unix:${join(dir, "migrate.sock")}`]);
    started.push(dst);
    await withDeadline(src.line("VHOSTKIT-ROUND 2 WRITTEN"), 60_000, "round 2's pattern written on the source");
    srcQmp = await qmpAt(join(dir, "src-qmp.sock"), 10_000);
    const qmp = srcQmp;
    // The switch-over threshold is the measured bandwidth times the downtime limit. The first pass
    // over guest RAM runs at 32 MiB/s; near its end the cap drops to 2 MiB/s, so that with a 1 ms
    // limit (2 KiB, less than a page) the migration cannot complete while the guest dirties pages.
    await qmp.execute("migrate-set-parameters", { "max-bandwidth": 32 * 1024 * 1024, "downtime-limit": 1 });
    const t0 = Date.now();
    await qmp.execute("migrate", { uri: `unix:${join(dir, "migrate.sock")}` });
    type MigrateInfo = { status: string; ram?: { "dirty-sync-count"?: number; remaining?: number } };
    const firstPassDone = async (): Promise<MigrateInfo> => {
      let slowed = false;
      for (;;) {
        const r = (await qmp.execute("query-migrate")) as MigrateInfo;
        if (r.status !== "active" && r.status !== "setup") return r;
        if (!slowed && r.status === "active" && (r.ram?.remaining ?? Infinity) < 6 * 1024 * 1024) {
          await qmp.execute("migrate-set-parameters", { "max-bandwidth": 2 * 1024 * 1024 });
          slowed = true;
        }
        if (slowed && (r.ram?.["dirty-sync-count"] ?? 0) >= 2) return r;
        await pause(20);
      }
    };
    const afterPass = await withDeadline(firstPassDone(), 30_000, "the first pass over guest RAM");
    assert.equal(afterPass.status, "active", JSON.stringify(afterPass));
    src.send("go"); // round 2 reads the disk into pages the first pass already sent
    await withDeadline(src.line("VHOSTKIT-ROUND 2 CACHED"), 30_000, "round 2's read on the source");
    const during = (await qmp.execute("query-migrate")) as MigrateInfo;
    await qmp.execute("migrate-set-parameters", { "max-bandwidth": 1024 * 1024 * 1024, "downtime-limit": 2000 });
    const end = await migrationEnd(srcQmp, 45_000);
    const migrateMs = Date.now() - t0;
    const consoles = () =>
      `source:\n${src.lines.join("\n")}\ndestination:\n${dst.lines.join("\n")}\nsource device:\n${srcDev.lines.join("\n")}\ndestination device:\n${dstDev.lines.join("\n")}\n${src.stderr}${dst.stderr}`;
    assert.equal(end.status, "completed", `${end["error-desc"] ?? ""}\n${consoles()}`);
    dst.send("go"); // round 2 compares, on the destination
    assert.equal(during.status, "active", `the migration was running, past its first pass, when round 2 read the disk: ${JSON.stringify(during)}`);
    const exit = await withDeadline(
      dst.line((l) => l.startsWith("VHOSTKIT-GUEST-EXIT")),
      45_000,
      "the guest script to finish on the destination",
    );
    assert.equal(exit.trim(), "VHOSTKIT-GUEST-EXIT 0", consoles());
    assert.ok(dst.lines.includes("VHOSTKIT-ROUND 2 VERIFIED"), `round 2 compared on the destination\n${consoles()}`);
    const all = [...src.lines, ...dst.lines];
    for (let r = 1; r <= ROUNDS; r++) assert.ok(all.includes(`VHOSTKIT-ROUND ${r} VERIFIED`), `round ${r}\n${consoles()}`);
    assert.ok(
      dst.lines.some((l) => /^VHOSTKIT-ROUND \d+ VERIFIED$/.test(l)),
      `rounds ran on the destination\n${consoles()}`,
    );
    assert.ok(!all.includes("VHOSTKIT-KERNEL-IO-ERROR"), consoles());
    // The source logged: QEMU handed it the log (LOG_SHMFD negotiated); the destination never needed one.
    assert.ok(
      srcDev.lines.some((l) => l.includes("SET_LOG_BASE")),
      consoles(),
    );
    assert.ok(!started.slice(0, 2).some((p) => p.lines.some((l) => l.includes("queue-broken") || l.includes("dropped"))), consoles());
    assert.equal(await withDeadline(dst.exited, 15_000, "the destination QEMU to exit after the guest powered off"), 0);
    process.stdout.write(`# migration took ${migrateMs} ms\n`);
  } finally {
    srcQmp?.close();
    for (const p of started.reverse()) await p.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("QEMU 7.2 refuses to migrate when the vhostkit device offers neither LOG_ALL nor LOG_SHMFD (--no-log)", { timeout: 110_000 }, async () => {
  const [program, ...prefix] = peerCommand("bookworm", "qemu-system-x86_64");
  const dir = mkdtempSync(join(tmpdir(), "vhostkit-linux-nolog-"));
  const started: LineProcess[] = [];
  let qmp: Qmp | undefined;
  try {
    const dev = await device(join(dir, "blk.sock"), join(dir, "disk.img"), ["--no-log"]);
    started.push(dev);
    // No guest needed: QEMU decides when it sets the device up, before the VM runs (-S).
    const qemu = new LineProcess(program as string, [
      ...prefix,
      ...vhostUserBlkMachine(join(dir, "blk.sock"), 64),
      "-display",
      "none",
      "-nodefaults",
      "-S",
      "-qmp",
      `unix:${join(dir, "qmp.sock")},server=on,wait=off`,
    ]);
    started.push(qemu);
    qmp = await qmpAt(join(dir, "qmp.sock"), 20_000);
    // QEMU 7.2's vhost-user layer checks LOG_SHMFD first (a back-end with neither gets this
    // blocker, not vhost's "lacks VHOST_F_LOG_ALL"): either way the migration never starts.
    await assert.rejects(qmp.execute("migrate", { uri: `unix:${join(dir, "migrate.sock")}` }), {
      message: "qmp migrate: Migration disabled: vhost-user backend lacks VHOST_USER_PROTOCOL_F_LOG_SHMFD feature.",
    });
    assert.equal(((await qmp.execute("query-migrate")) as { status?: string }).status, undefined, "no migration was started");
    assert.ok(!dev.lines.some((l) => l.includes("SET_LOG_BASE")), dev.lines.join("\n"));
  } finally {
    qmp?.close();
    for (const p of started.reverse()) await p.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
