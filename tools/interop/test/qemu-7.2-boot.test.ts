/**
 * A real front-end: QEMU 7.2's qemu-system-x86_64 from Debian 12 (TCG; fetched by
 * tools/peers/fetch.sh without root) drives the RAM blk example device of @vhostkit/backend as
 * `vhost-user-blk-pci`. SeaBIOS boots the boot sector stored on the device's RAM disk
 * (fixtures/boot-sector.S): it writes itself to LBA 1 through INT 13h, reads it back, compares, and
 * prints a marker on the serial console. The marker proves the handshake, the memory table, the
 * vring set-up and real reads and writes through the device. The device requires sealed guest
 * memory (`--sealed-memory`): QEMU's memory-backend-memfd seals it by default.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { peerCommand } from "@vhostkit/peers/peers";
import { LineProcess, withDeadline } from "./helpers/processes.js";
import { vhostUserBlkMachine } from "./helpers/qemu.js";

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));
const RAM_BLK = here("../../../packages/backend/examples/ram-blk.mjs");
const BOOT = here("./fixtures/boot-sector.hex");

test("QEMU 7.2 (vhost-user-blk-pci, TCG) boots from the RAM blk device: SeaBIOS writes, reads back and prints the marker", { timeout: 100_000 }, async () => {
  const [program, ...prefix] = peerCommand("bookworm", "qemu-system-x86_64"); // not fetched: fails here, at once
  const dir = mkdtempSync(join(tmpdir(), "vhostkit-qemu-"));
  const sector = Buffer.from(readFileSync(BOOT, "utf8").trim(), "hex");
  assert.equal(sector.length, 512);
  const image = join(dir, "disk.img");
  writeFileSync(image, Buffer.concat([sector, Buffer.alloc(1024 * 1024 - 512)]));
  const socket = join(dir, "dev.sock");
  const dev = new LineProcess(process.execPath, [RAM_BLK, "--socket", socket, "--size-mib", "1", "--image", image, "--once", "--sealed-memory"]);
  let qemu: LineProcess | undefined;
  try {
    await withDeadline(dev.line("listening"), 20_000, "the RAM blk device to listen");
    qemu = new LineProcess(program as string, [
      ...prefix,
      ...vhostUserBlkMachine(socket, 256, ",bootindex=1"),
      "-display",
      "none",
      "-nodefaults",
      "-no-reboot",
      "-monitor",
      "none",
      "-serial",
      "stdio",
    ]);
    const marker = await withDeadline(
      qemu.line((l) => /VHOSTKIT-BOOT-(OK|FAIL)/.test(l)),
      80_000,
      "the boot marker on QEMU's serial console",
    );
    assert.match(marker, /VHOSTKIT-BOOT-OK/, `serial: ${qemu.lines.join("\n")}\nqemu: ${qemu.stderr}\ndevice: ${dev.lines.join("\n")}`);
  } finally {
    await qemu?.stop();
    await dev.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
