/**
 * A Linux guest on the RAM blk example of @vhostkit/backend: Debian 12's kernel (`virtio_blk` over
 * `virtio_pci`) in QEMU (TCG) with the device as `vhost-user-blk-pci`. The guest script prints the
 * virtio features the driver negotiated, writes random data at an offset, drops its page cache,
 * reads the blocks back from the device and compares, and checks its kernel log for I/O errors.
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { buildInitramfs, guestQemuArgs } from "@vhostkit/peers/guest";
import { peerCommand } from "@vhostkit/peers/peers";
import { LineProcess, withDeadline } from "./processes.js";
import { vhostUserBlkMachine } from "./qemu.js";

/** The RAM blk example: found upwards from this module, which may run bundled one level up (the Node leg). */
const RAM_BLK = ((): string => {
  for (let d = dirname(fileURLToPath(import.meta.url)); d !== dirname(d); d = dirname(d)) {
    const f = join(d, "packages/backend/examples/ram-blk.mjs");
    if (existsSync(f)) return f;
  }
  throw new Error("packages/backend/examples/ram-blk.mjs not found above this module");
})();

/** The guest script: `blocks` 4 KiB blocks of random data written at block 3, then read back. */
function script(blocks: number): string {
  return `
set -e
features=$(cat /sys/bus/virtio/devices/virtio0/features)
echo "VHOSTKIT-FEATURES $features"
dd if=/dev/urandom of=/tmp/pattern bs=4096 count=${blocks} 2>/dev/null
dd if=/tmp/pattern of=/dev/vda bs=4096 seek=3 conv=fsync 2>/dev/null
echo 3 > /proc/sys/vm/drop_caches
dd if=/dev/vda of=/tmp/back bs=4096 skip=3 count=${blocks} 2>/dev/null
cmp /tmp/pattern /tmp/back && echo VHOSTKIT-VERIFY-OK
if dmesg | grep -i -E "I/O error|blk_update_request|virtio_blk.*error"; then echo VHOSTKIT-KERNEL-IO-ERROR; fi
`;
}

/** Options of {@link runBlkGuest}. */
export interface BlkGuestOptions {
  /** Which QEMU: `bookworm` (7.2) or `sid` (11.1), from tools/peers. */
  readonly peer: "bookworm" | "sid";
  /** Appended to the `vhost-user-blk-pci` properties (e.g. `,packed=on`). */
  readonly deviceExtra?: string;
  /** 4 KiB blocks written and verified (default 64: 256 KiB). */
  readonly blocks?: number;
  /** How long the guest script may take, in ms (default 90 s; keep it below the test's timeout). */
  readonly deadlineMs?: number;
}

/** What the guest reported. */
export interface BlkGuestResult {
  /** The driver's feature bits as sysfs prints them: character i is bit i. */
  readonly features: string;
  /** The serial console, for assertion messages. */
  readonly console: string;
}

/**
 * Boots the guest on a fresh RAM blk device (4 MiB, sealed memory required, one connection),
 * asserts that the script exited 0, the data verified and the kernel logged no I/O error, and that
 * QEMU exited 0 after the guest powered off. Everything started is stopped, and the temp dir
 * removed, whatever happens.
 */
export async function runBlkGuest(o: BlkGuestOptions): Promise<BlkGuestResult> {
  const [program, ...prefix] = peerCommand(o.peer, "qemu-system-x86_64"); // not fetched: fails here, at once
  const dir = mkdtempSync(join(tmpdir(), "vhostkit-linux-blk-"));
  const image = buildInitramfs({ out: join(dir, "initramfs.cpio"), modules: ["virtio_pci", "virtio_blk"], script: script(o.blocks ?? 64) });
  const socket = join(dir, "blk.sock");
  const dev = new LineProcess(process.execPath, [RAM_BLK, "--socket", socket, "--size-mib", "4", "--once", "--sealed-memory"]);
  let qemu: LineProcess | undefined;
  try {
    await withDeadline(dev.line("listening"), 20_000, "the RAM blk device to listen");
    qemu = new LineProcess(program as string, [...prefix, ...vhostUserBlkMachine(socket, 256, o.deviceExtra), ...guestQemuArgs(image)]);
    const exit = await withDeadline(
      qemu.line((l) => l.startsWith("VHOSTKIT-GUEST-EXIT")),
      o.deadlineMs ?? 90_000,
      "the guest script to finish",
    );
    const console = qemu.lines.join("\n");
    assert.equal(exit.trim(), "VHOSTKIT-GUEST-EXIT 0", console);
    assert.ok(!qemu.lines.some((l) => l.startsWith("VHOSTKIT-GUEST-INSMOD-FAILED")), console);
    assert.ok(qemu.lines.includes("VHOSTKIT-VERIFY-OK"), console);
    assert.ok(!qemu.lines.includes("VHOSTKIT-KERNEL-IO-ERROR"), console);
    assert.equal(await withDeadline(qemu.exited, 15_000, "QEMU to exit after the guest powered off"), 0);
    const features = qemu.lines.find((l) => l.startsWith("VHOSTKIT-FEATURES "))?.split(" ")[1] ?? "";
    return { features, console };
  } finally {
    await qemu?.stop();
    await dev.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
