/**
 * A back-end restarted under a real guest (docs/protocol.md#inflight-tracking-and-reconnect):
 * QEMU 7.2 (TCG) with `-chardev socket,...,reconnect=1` and `vhost-user-blk-pci` on the RAM blk
 * example, whose disk is a file written through before each write completes (`--file`), so it
 * survives the device process. Debian 12's Linux (`virtio_blk`) writes a fresh random pattern over
 * the whole 4 MiB disk with direct I/O (the device takes 100 ms per request, so requests are in flight for most of a write) and verifies it, round after round; in the middle of the loop the device
 * process is killed with SIGKILL and started again on the same socket. QEMU reconnects, hands the
 * new process the inflight area (SET_INFLIGHT_FD: INFLIGHT_SHMFD was negotiated, the device's event
 * log shows GET_INFLIGHT_FD and SET_INFLIGHT_FD) and the new process serves what its predecessor
 * held; the guest finishes every round verified, with no I/O error in its kernel log. On split
 * rings and on packed ones (`packed=on`, the guest's features show bit 34): QEMU sets the features
 * before GET_INFLIGHT_FD, so the area is in the packed layout, and after the reconnect QEMU's
 * SET_VRING_BASE is stale for a packed ring — the new process resumes where the area says.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { buildInitramfs, guestQemuArgs } from "@vhostkit/peers/guest";
import { peerCommand } from "@vhostkit/peers/peers";
import { LineProcess, withDeadline } from "./helpers/processes.js";
import { vhostUserBlkMachine } from "./helpers/qemu.js";

const RAM_BLK = fileURLToPath(new URL("../../../packages/backend/examples/ram-blk.mjs", import.meta.url));
const ROUNDS = 6;

const SCRIPT = `
set -e
echo "VHOSTKIT-FEATURES $(cat /sys/bus/virtio/devices/*/features | head -n 1)"
round=1
while [ $round -le ${ROUNDS} ]; do
  dd if=/dev/urandom of=/tmp/pattern bs=65536 count=64 2>/dev/null
  dd if=/tmp/pattern of=/dev/vda bs=1048576 oflag=direct 2>/dev/null &
  writer=$!
  sleep 0.3
  echo "VHOSTKIT-ROUND $round WRITING"
  wait $writer
  dd if=/dev/vda of=/tmp/back bs=1048576 count=4 iflag=direct 2>/dev/null
  if cmp /tmp/pattern /tmp/back; then echo "VHOSTKIT-ROUND $round VERIFIED"; else echo "VHOSTKIT-ROUND $round MISMATCH"; exit 1; fi
  round=$((round + 1))
done
if dmesg | grep -i -E "I/O error|blk_update_request|virtio_blk.*error"; then echo VHOSTKIT-KERNEL-IO-ERROR; fi
`;

for (const packed of [false, true]) {
  test(`QEMU 7.2 reconnects to the RAM blk device killed with SIGKILL mid-loop on ${packed ? "packed" : "split"} rings; the Linux guest verifies every round, no I/O error (INFLIGHT_SHMFD)`, {
    timeout: 110_000,
  }, async () => {
    const [program, ...prefix] = peerCommand("bookworm", "qemu-system-x86_64"); // not fetched: fails here, at once
    const dir = mkdtempSync(join(tmpdir(), "vhostkit-linux-reconnect-"));
    const image = buildInitramfs({ out: join(dir, "initramfs.cpio"), modules: ["virtio_pci", "virtio_blk"], script: SCRIPT });
    const socket = join(dir, "blk.sock");
    const lives: LineProcess[] = [];
    const start = async (): Promise<LineProcess> => {
      const dev = new LineProcess(process.execPath, [
        RAM_BLK,
        "--socket",
        socket,
        "--size-mib",
        "4",
        "--file",
        join(dir, "disk.img"),
        "--sealed-memory",
        "--events",
        "--latency-ms",
        "100",
      ]);
      lives.push(dev);
      await withDeadline(dev.line("listening"), 20_000, "the RAM blk device to listen");
      return dev;
    };
    let qemu: LineProcess | undefined;
    try {
      const first = await start();
      qemu = new LineProcess(program as string, [
        ...prefix,
        ...vhostUserBlkMachine(socket, 256, packed ? ",packed=on" : "", ",reconnect=1"),
        ...guestQemuArgs(image),
      ]);
      // Round 3's direct write of the whole disk (four 1 MiB requests one after the other, 100 ms each
      // in the device) started 0.3 s before this line: a request is in flight when the device dies.
      await withDeadline(qemu.line("VHOSTKIT-ROUND 3 WRITING"), 75_000, "two verified rounds");
      first.child.kill("SIGKILL");
      await withDeadline(first.exited, 10_000, "the killed device to exit");
      const second = await start();
      const exit = await withDeadline(
        qemu.line((l) => l.startsWith("VHOSTKIT-GUEST-EXIT")),
        60_000,
        "the guest script to finish",
      );
      const console = qemu.lines.join("\n");
      const events = lives.map((l, i) => `life ${i + 1}:\n${l.lines.join("\n")}`).join("\n");
      assert.equal(exit.trim(), "VHOSTKIT-GUEST-EXIT 0", `${console}\n${events}`);
      const features = qemu.lines.find((l) => l.startsWith("VHOSTKIT-FEATURES "))?.split(" ")[1] ?? "";
      assert.equal(features[34], packed ? "1" : "0", `VIRTIO_F_RING_PACKED as configured: ${features}`);
      for (let r = 1; r <= ROUNDS; r++) assert.ok(qemu.lines.includes(`VHOSTKIT-ROUND ${r} VERIFIED`), `round ${r}\n${console}`);
      assert.ok(!qemu.lines.includes("VHOSTKIT-KERNEL-IO-ERROR"), console);
      // INFLIGHT_SHMFD was negotiated: the first process allocated the area, the second got it back.
      assert.ok(
        first.lines.some((l) => l.includes("GET_INFLIGHT_FD")),
        events,
      );
      assert.ok(
        second.lines.some((l) => l.includes("SET_INFLIGHT_FD")),
        events,
      );
      assert.ok(!second.lines.some((l) => l.includes("GET_INFLIGHT_FD")), `QEMU kept its area across the reconnect\n${events}`);
      assert.ok(
        second.lines.some((l) => /^event inflight queue 0 resubmitted \d+$/.test(l)),
        events,
      );
      assert.ok(!lives.some((l) => l.lines.some((x) => x.includes("queue-broken") || x.includes("dropped"))), events);
      assert.equal(await withDeadline(qemu.exited, 15_000, "QEMU to exit after the guest powered off"), 0);
    } finally {
      await qemu?.stop();
      for (const l of lives) await l.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
}
