/**
 * QEMU 11.1 — the first release with VIRTIO Shared Memory Regions over vhost-user — against a
 * back-end built on @vhostkit/backend. QEMU comes from Debian unstable, fetched without root by
 * tools/peers/fetch.sh into the user's cache
 * as `-device vhost-user-test-device-pci` presenting virtio-blk (virtio-id 2, config_size 60), so
 * SeaBIOS drives it, sets DRIVER_OK and boots the boot sector on the device's RAM disk. Once the
 * device runs it maps a 64 KiB memfd blob at offset 0x10000 of shmid 1 (a 2 MiB region: QEMU 11.1
 * requires the total of the regions to be a power of two).
 *
 * Shown: QEMU negotiates SHMEM (bit 22) and sends GET_SHMEM_CONFIG; SHMEM_MAP gets reply 0 and the
 * mapping shows up in QEMU's memory tree (`info mtree` through QMP human-monitor-command) inside
 * BAR 4 with the blob's bytes (`xp`) and is propagated to the back-end's memory table (ADD_MEM_REG);
 * SHMEM_UNMAP removes it (and REM_MEM_REG follows).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { peerCommand } from "@vhostkit/peers/peers";
import { assertVersionAtLeast } from "@vhostkit/peers/version";
import { LineProcess, Qmp, withDeadline } from "./helpers/processes.js";

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));
const DEVICE = here("./fixtures/shmem-blk-device.mjs");
const BOOT = here("./fixtures/boot-sector.hex");
const SHM_SIZE = 2 << 20;

function step(p: LineProcess, name: string): Promise<Record<string, unknown>> {
  return p.line((l) => l.includes(`"step":"${name}"`)).then((l) => JSON.parse(l) as Record<string, unknown>);
}

/** The memory-region lines of the shmem BAR in `info mtree` (the first address space that has them). */
function shmemTree(mtree: string): string[] {
  const lines = mtree.split("\n");
  const i = lines.findIndex((l) => l.includes("vhost-device-pci-shmembar"));
  if (i < 0) return [];
  const indent = (l: string) => l.length - l.trimStart().length;
  const out = [lines[i] as string];
  for (let j = i + 1; j < lines.length && indent(lines[j] as string) > indent(lines[i] as string); j++) out.push(lines[j] as string);
  return out;
}

test("QEMU 11.1 vhost-user-test-device-pci: SHMEM negotiated, GET_SHMEM_CONFIG, SHMEM_MAP visible in info mtree and guest memory, SHMEM_UNMAP removes it", {
  timeout: 110_000,
}, async () => {
  const [program, ...prefix] = peerCommand("sid", "qemu-system-x86_64"); // not fetched: fails here, at once
  const version = spawnSync(program as string, [...prefix, "--version"], { encoding: "utf8", timeout: 10_000 });
  assertVersionAtLeast(version.stdout, "QEMU emulator version", "11.1");

  const dir = mkdtempSync(join(tmpdir(), "vhostkit-qemu11-"));
  const image = join(dir, "disk.img");
  const sector = Buffer.from(readFileSync(BOOT, "utf8").trim(), "hex");
  writeFileSync(image, Buffer.concat([sector, Buffer.alloc((1 << 20) - sector.length)]));
  const socket = join(dir, "dev.sock");
  const qmpPath = join(dir, "qmp.sock");
  const dev = new LineProcess(process.execPath, [DEVICE, "--socket", socket, "--image", image, "--shm-size", String(SHM_SIZE), "--trace"], { stdin: true });
  let qemu: LineProcess | undefined;
  let qmp: Qmp | undefined;
  try {
    await withDeadline(step(dev, "listening"), 20_000, "listening device");
    qemu = new LineProcess(program as string, [
      ...prefix,
      "-machine",
      "q35,accel=tcg,memory-backend=mem",
      "-m",
      "128M",
      "-object",
      "memory-backend-memfd,id=mem,size=128M,share=on",
      "-chardev",
      `socket,id=c0,path=${socket}`,
      "-device",
      "vhost-user-test-device-pci,id=shm0,chardev=c0,virtio-id=2,num_vqs=1,config_size=60",
      "-display",
      "none",
      "-nodefaults",
      "-no-reboot",
      "-serial",
      "stdio",
      "-qmp",
      `unix:${qmpPath},server=on,wait=off`,
    ]);
    const failed = dev.line((l) => /"step":"(map-failed|dropped|rejected)"/.test(l)).then((l) => assert.fail(`device: ${l}\n${dev.lines.join("\n")}`));
    const mapped = await withDeadline(Promise.race([step(dev, "mapped"), failed]), 40_000, "SHMEM_MAP from the device");
    // SHMEM (bit 22, upstream dialect) was negotiated: the dispatcher answers GET_SHMEM_CONFIG only
    // then, and the client can map only with SHMEM and BACKEND_SEND_FD acknowledged.
    assert.ok(
      dev.lines.some((l) => l.includes('"name":"GET_SHMEM_CONFIG"')),
      "QEMU sent GET_SHMEM_CONFIG",
    );
    assert.equal((await step(dev, "running")).canMap, true);
    // SHMEM_MAP got reply 0: REPLY_ACK was negotiated (QEMU asks for acks of its ADD_MEM_REGs only
    // then), so the client sent the map with NEED_REPLY, and shmemMap resolves only on status 0.
    assert.ok(
      dev.lines.some((l) => l.includes('"name":"ADD_MEM_REG"') && ((JSON.parse(l) as { flags: number }).flags & 0x8) !== 0),
      "REPLY_ACK negotiated",
    );
    assert.deepEqual([mapped.shmid, mapped.offset, mapped.len], [1, "0x10000", "0x10000"]);

    // Eager propagation (docs/shmem.md#eager-propagation): QEMU adds the mapping to the back-end's own memory table
    // (ADD_MEM_REG after the reply), on top of the guest RAM region added before the rings.
    const running = dev.lines.findIndex((l) => l.includes('"step":"running"'));
    const ramRegions = dev.lines.slice(0, running).filter((l) => l.includes('"name":"ADD_MEM_REG"')).length;
    assert.ok(ramRegions >= 1, "guest RAM came with ADD_MEM_REG (CONFIGURE_MEM_SLOTS)");
    await withDeadline(
      dev.line((l) => l.includes('"name":"ADD_MEM_REG"') && dev.lines.filter((x) => x.includes('"name":"ADD_MEM_REG"')).length > ramRegions),
      20_000,
      "ADD_MEM_REG of the mapping",
    );

    qmp = await withDeadline(Qmp.connect(qmpPath), 20_000, "QMP greeting");
    const tree = shmemTree(await qmp.hmp("info mtree"));
    assert.ok(tree.length >= 3, `shmem BAR in info mtree:\n${tree.join("\n")}`);
    const region = /([0-9a-f]{16})-([0-9a-f]{16}) \(prio \d+, i\/o\): virtio-shmem-1$/m.exec(tree.join("\n"));
    assert.ok(region, `region virtio-shmem-1 in\n${tree.join("\n")}`);
    const base = BigInt(`0x${region[1]}`);
    assert.equal(BigInt(`0x${region[2]}`) - base + 1n, BigInt(SHM_SIZE), "shmid 1 has the size GET_SHMEM_CONFIG reported");
    const mapping = /([0-9a-f]{16})-([0-9a-f]{16}) \(prio \d+, ram\): (\S+)/.exec(tree.join("\n"));
    assert.ok(mapping, `a RAM subregion for the mapping in\n${tree.join("\n")}`);
    assert.equal(BigInt(`0x${mapping[1]}`), base + 0x10000n, "mapped at shm_offset 0x10000");
    assert.equal(BigInt(`0x${mapping[2]}`) - BigInt(`0x${mapping[1]}`) + 1n, 0x10000n, "0x10000 bytes");
    // The guest-physical bytes there are the blob's.
    const xp = await qmp.hmp(`xp /16xb 0x${(base + 0x10000n).toString(16)}`);
    const bytes = [...xp.matchAll(/0x([0-9a-f]{2})\b/g)].map((m) => parseInt(m[1] as string, 16));
    assert.equal(Buffer.from(bytes.slice(-16)).toString("latin1"), mapped.pattern, xp);

    // SeaBIOS drove the device through its rings (DRIVER_OK, reads and writes) and the map did not disturb it.
    assert.match(
      await withDeadline(
        qemu.line((l) => /VHOSTKIT-BOOT-(OK|FAIL)/.test(l)),
        60_000,
        "boot marker",
      ),
      /VHOSTKIT-BOOT-OK/,
    );
    dev.send("unmap");
    await withDeadline(Promise.race([step(dev, "unmapped"), dev.line('"step":"unmap-failed"').then((l) => assert.fail(l))]), 20_000, "SHMEM_UNMAP");
    const after = shmemTree(await qmp.hmp("info mtree")).join("\n");
    assert.doesNotMatch(after, /\(prio \d+, ram\)/, `no mapping left:\n${after}`);
    assert.match(after, /virtio-shmem-1$/m);
    // ...and QEMU took it out of our memory table again (REM_MEM_REG), after the reply.
    await withDeadline(dev.line('"name":"REM_MEM_REG"'), 20_000, "REM_MEM_REG");
  } finally {
    if (qmp !== undefined) {
      await withDeadline(qmp.execute("quit"), 5_000, "QMP quit").catch(() => undefined);
      qmp.close();
    }
    await qemu?.stop();
    await dev.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
