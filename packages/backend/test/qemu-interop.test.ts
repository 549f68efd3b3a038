/**
 * A real front-end: QEMU 7.2's qemu-system-x86_64 from Debian (TCG; installed by
 * tools/peers/install-qemu-7.2.sh, which .ci/run runs) drives the RAM blk example device as
 * `vhost-user-blk-pci`. SeaBIOS boots the boot sector stored on the device's RAM disk
 * (fixtures/boot-sector.S): it writes itself to LBA 1 through INT 13h, reads it back, compares, and
 * prints a marker on the serial console. The marker proves the handshake, the memory table, the
 * vring set-up and real reads and writes through the device. The device requires sealed guest
 * memory (`--sealed-memory`): QEMU's memory-backend-memfd seals it by default.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { DeviceProcess } from "./helpers/scripted-frontend.js";

const RAM_BLK = fileURLToPath(new URL("../examples/ram-blk.mjs", import.meta.url));
const BOOT = fileURLToPath(new URL("./fixtures/boot-sector.hex", import.meta.url));
const QEMU = "qemu-system-x86_64";

test("QEMU 7.2 (vhost-user-blk-pci, TCG) boots from the RAM blk device: SeaBIOS writes, reads back and prints the marker", { timeout: 120_000 }, async () => {
  const version = spawnSync(QEMU, ["--version"], { encoding: "utf8" });
  assert.equal(version.status, 0, `${QEMU} is needed: run tools/peers/install-qemu-7.2.sh (as root)`);
  const dir = mkdtempSync(join(tmpdir(), "vhostkit-qemu-"));
  const sector = Buffer.from(readFileSync(BOOT, "utf8").trim(), "hex");
  assert.equal(sector.length, 512);
  const image = join(dir, "disk.img");
  writeFileSync(image, Buffer.concat([sector, Buffer.alloc(1024 * 1024 - 512)]));
  const dev = new DeviceProcess(RAM_BLK, ["--size-mib", "1", "--image", image, "--once", "--sealed-memory"]);
  try {
    await dev.line("listening");
    const qemu = spawn(
      QEMU,
      [
        "-machine", "q35,accel=tcg,memory-backend=mem",
        "-m", "256M",
        "-object", "memory-backend-memfd,id=mem,size=256M,share=on",
        "-chardev", `socket,id=blk0,path=${dev.socket}`,
        "-device", "vhost-user-blk-pci,chardev=blk0,num-queues=1,bootindex=1",
        "-display", "none", "-nodefaults", "-no-reboot", "-monitor", "none",
        "-serial", "stdio",
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    let out = "";
    let err = "";
    qemu.stderr.on("data", (b: Buffer) => (err += b.toString()));
    const marker = await new Promise<string>((resolve) => {
      const timer = setTimeout(() => resolve("timeout"), 100_000);
      qemu.stdout.on("data", (b: Buffer) => {
        out += b.toString();
        const m = /VHOSTKIT-BOOT-(OK|FAIL)/.exec(out);
        if (m) {
          clearTimeout(timer);
          resolve(m[0]);
        }
      });
      qemu.once("exit", () => {
        clearTimeout(timer);
        resolve(`qemu exited: ${err}`);
      });
    });
    // QEMU may have exited already (the marker is then "qemu exited: ..."): do not wait for an
    // exit event that has been and gone.
    if (qemu.exitCode === null && qemu.signalCode === null) {
      const exited = new Promise((r) => qemu.once("exit", r));
      qemu.kill("SIGTERM");
      await exited;
    }
    assert.equal(marker, "VHOSTKIT-BOOT-OK", `serial: ${out}\nqemu: ${err}\ndevice: ${dev.lines.join("\n")}`);
  } finally {
    await dev.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
