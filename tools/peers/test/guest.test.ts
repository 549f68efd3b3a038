/**
 * The guest image builder: module dependencies come first, and the archive is a newc cpio the
 * kernel can unpack (checked by reading it back here; booting it is tools/interop's job).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildInitramfs, guestKernel, resolveModules } from "../src/guest.mjs";

/** Entries of a newc archive: name, mode, data. */
function readCpio(bytes: Buffer): { name: string; mode: number; data: Buffer }[] {
  const out: { name: string; mode: number; data: Buffer }[] = [];
  let at = 0;
  const pad = (n: number) => (n + 3) & ~3;
  for (;;) {
    assert.equal(bytes.toString("latin1", at, at + 6), "070701", `magic at ${at}`);
    const field = (i: number) => parseInt(bytes.toString("latin1", at + 6 + i * 8, at + 14 + i * 8), 16);
    const mode = field(1);
    const size = field(6);
    const nameSize = field(11);
    const name = bytes.toString("utf8", at + 110, at + 110 + nameSize - 1);
    const dataAt = pad(at + 110 + nameSize);
    if (name === "TRAILER!!!") return out;
    out.push({ name, mode, data: bytes.subarray(dataAt, dataAt + size) });
    at = pad(dataAt + size);
  }
}

test("resolveModules puts dependencies first and names a missing module", () => {
  const k = guestKernel(); // not fetched: fails here, at once
  const names = resolveModules(k.modulesDir, ["virtio_blk", "virtio-pci"]).map((m) => m.name);
  assert.ok(names.includes("virtio") && names.includes("virtio_ring"), names.join(" "));
  assert.ok(names.indexOf("virtio_ring") < names.indexOf("virtio_blk"));
  assert.ok(names.indexOf("virtio") < names.indexOf("virtio_pci"));
  assert.equal(new Set(names).size, names.length, "each module once");
  assert.throws(() => resolveModules(k.modulesDir, ["no_such_module"]), /kernel module no_such_module is not in/);
});

test("buildInitramfs writes a newc archive with busybox, the modules in load order and an /init that runs the script", () => {
  const dir = mkdtempSync(join(tmpdir(), "vhostkit-initramfs-"));
  try {
    const image = buildInitramfs({
      out: join(dir, "i.cpio"),
      modules: ["virtio_blk"],
      script: "echo hello",
      files: { "/bin/tool": "#!/bin/sh\n", "/etc/data": "x" },
    });
    const entries = readCpio(readFileSync(image.initrd));
    const byName = new Map(entries.map((e) => [e.name, e]));
    assert.equal(byName.get("bin/busybox")?.mode, 0o100755);
    assert.equal(byName.get("bin/sh")?.mode, 0o120777);
    assert.equal(byName.get("bin/sh")?.data.toString(), "busybox");
    assert.equal(byName.get("bin/tool")?.mode, 0o100755);
    assert.equal(byName.get("etc/data")?.mode, 0o100644);
    assert.equal(byName.get("etc/script.sh")?.data.toString(), "echo hello");
    const init = byName.get("init")?.data.toString() ?? "";
    const loads = [...init.matchAll(/insmod \/lib\/modules\/(\w+)\.ko/g)].map((m) => m[1]);
    assert.deepEqual(loads, image.modules);
    for (const m of image.modules) assert.ok(byName.has(`lib/modules/${m}.ko`), m);
    assert.ok(init.indexOf("VHOSTKIT-GUEST-READY") < init.indexOf("sh /etc/script.sh"));
    assert.match(init, /VHOSTKIT-GUEST-EXIT \$\?/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
