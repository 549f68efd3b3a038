/**
 * Host-visible blobs under the real Linux virtio-gpu driver: Debian 12's Linux in QEMU 11.1 (TCG)
 * on vhostkit-gpu (`vhost-user-test-device-pci,virtio-id=16`). A static guest program creates a
 * context of the sample's capset (30, DRM_IOCTL_VIRTGPU_CONTEXT_INIT), a HOST3D mappable blob of
 * 1 MiB (DRM_IOCTL_VIRTGPU_RESOURCE_CREATE_BLOB), maps it (DRM_IOCTL_VIRTGPU_MAP + mmap of the
 * driver's window in shmid 1): RESOURCE_MAP_BLOB makes the back-end send SHMEM_MAP of its memfd, so
 * the guest reads the words the back-end seeded from blob_id, and the back-end's hash of its own
 * pages at RESOURCE_UNMAP_BLOB (which sends SHMEM_UNMAP) is the hash of what the guest wrote. Then
 * what the sample does not support: a 3D submit (ERR_UNSPEC; its fence still signals), a host blob
 * in a context without the capset (ERR_INVALID_PARAMETER; the mmap fails instead of hanging), a
 * capset the device never advertised (refused by the driver).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { withDeadline } from "./helpers/processes.js";
import { consoleText, guestWord, withGpuGuest, type GpuEvent, type GpuGuest } from "./helpers/gpu-guest.js";

const BLOB_SIZE = 1 << 20;
const SEED = 0x1234_5678;

// Kernel messages stay off the serial console (dmesg -n 1), so that each line is whole; the program's
// exit status is the last line: the guest powers off right after it.
const SCRIPT = `
dmesg -n 1
/bin/virtio-gpu-guest blob ${BLOB_SIZE} ${SEED}
status=$?
dmesg | grep -E 'virtio_gpu|\\[drm' | sed 's/^/VHOSTKIT-DMESG /'
/bin/virtio-gpu-guest drain
echo "VHOSTKIT-PROGRAM-EXIT $status"
`;

/** The guest's line starting with `prefix` (its rest), or a failure showing the console. */
function guestLine(g: GpuGuest, prefix: string): string {
  const l = g.qemu.lines.find((x) => x.startsWith(`${prefix} `) || x === prefix);
  assert.ok(l !== undefined, `no ${prefix} line\n${consoleText(g)}`);
  return l.slice(prefix.length).trim();
}

test("Linux 6.1 virtio_gpu in QEMU 11.1 on vhostkit-gpu: a host blob of the vhostkit capset mapped through SHMEM_MAP, bytes seen both ways, SHMEM_UNMAP on release; unsupported requests answered with errors", {
  timeout: 110_000,
}, async () => {
  await withGpuGuest({ name: "vhostkit-linux-gpu-blob", script: SCRIPT }, async (g) => {
    await withDeadline(
      g.qemu.line((l) => l.startsWith("VHOSTKIT-PROGRAM-EXIT")),
      95_000,
      "the guest program to finish",
    );
    assert.equal(await withDeadline(g.qemu.exited, 20_000, "QEMU to exit after the guest powered off"), 0, consoleText(g));
    const log = consoleText(g);
    await withDeadline(g.gpu.line('"event":"reset"'), 20_000, "vhostkit-gpu to reset");
    assert.ok(!g.qemu.lines.some((l) => l.startsWith("VHOSTKIT-GUEST-INSMOD-FAILED") || l.startsWith("VHOSTKIT-FAIL")), log);
    assert.equal(guestLine(g, "VHOSTKIT-PROGRAM-EXIT"), "0", log);

    // The driver's view: VIRGL, blobs, host-visible memory, context init, capset 30 only.
    assert.equal(guestLine(g, "VHOSTKIT-PARAMS"), `3d 1 blob 1 host_visible 1 context_init 1 capsets 0x${(1 << 30).toString(16)}`);
    assert.equal(guestLine(g, "VHOSTKIT-CAPSET"), "VHOSTKIT version 1 flags 0x3");
    const resourceId = Number(/^resource (\d+) size (\d+)$/.exec(guestLine(g, "VHOSTKIT-BLOB-CREATED"))?.[1]);
    assert.ok(resourceId > 0, log);
    // The guest read the back-end's words through shmid 1 and wrote its own.
    assert.equal(guestLine(g, "VHOSTKIT-BLOB-HOST-BYTES"), `OK ${BLOB_SIZE / 4} words`, log);
    assert.equal(guestLine(g, "VHOSTKIT-BLOB-GUEST-WROTE"), "OK", log);

    const events = g.events();
    const at = (f: (e: GpuEvent) => boolean, what: string): number => {
      const i = events.findIndex(f);
      assert.ok(i >= 0, `no ${what} in the back-end's events:\n${events.map((e) => JSON.stringify(e)).join("\n")}`);
      return i;
    };
    const cmd =
      (name: string, resp: string, more: (e: GpuEvent) => boolean = () => true) =>
      (e: GpuEvent) =>
        e.event === "command" && e.cmd === name && e.resp === resp && more(e);
    const created = events[
      at(
        cmd("RESOURCE_CREATE_BLOB", "OK_NODATA", (e) => e.resourceId === resourceId),
        "RESOURCE_CREATE_BLOB of the blob",
      )
    ] as GpuEvent;
    const ctxId = created.ctxId;
    const ctxCreate = at(
      cmd("CTX_CREATE", "OK_NODATA", (e) => e.ctxId === ctxId && e.capsetId === 30),
      `CTX_CREATE of context ${String(ctxId)} with capset 30`,
    );
    const create = events.indexOf(created);
    const map = at(
      cmd("RESOURCE_MAP_BLOB", "OK_MAP_INFO", (e) => e.resourceId === resourceId),
      "RESOURCE_MAP_BLOB answered OK_MAP_INFO",
    );
    const shmemMap = at((e) => e.event === "shmem-map" && e.len === `0x${BLOB_SIZE.toString(16)}`, "SHMEM_MAP of 1 MiB");
    const shmemUnmap = at((e) => e.event === "shmem-unmap", "SHMEM_UNMAP");
    const unmap = at(
      cmd("RESOURCE_UNMAP_BLOB", "OK_NODATA", (e) => e.resourceId === resourceId),
      "RESOURCE_UNMAP_BLOB",
    );
    const unref = at(
      cmd("RESOURCE_UNREF", "OK_NODATA", (e) => e.resourceId === resourceId),
      "RESOURCE_UNREF of the blob",
    );
    assert.ok(
      ctxCreate < create && create < shmemMap && shmemMap < map && map < shmemUnmap && shmemUnmap < unmap && unmap < unref,
      "context, create, map (acked before OK_MAP_INFO), unmap (acked before the response), unref",
    );
    assert.deepEqual(
      [events[shmemUnmap]?.offset, events[shmemUnmap]?.len],
      [events[shmemMap]?.offset, events[shmemMap]?.len],
      "SHMEM_UNMAP of exactly the mapped range",
    );
    assert.ok(events.some(cmd("CTX_ATTACH_RESOURCE", "OK_NODATA", (e) => e.ctxId === ctxId && e.resourceId === resourceId)));
    assert.ok(events.some(cmd("CTX_DESTROY", "OK_NODATA", (e) => e.ctxId === ctxId)), "the context is destroyed when the guest closes its DRM file");
    // The back-end's own pages at unmap hold what the guest wrote.
    const guestBytes = Buffer.alloc(BLOB_SIZE);
    for (let i = 0; i < BLOB_SIZE / 4; i++) guestBytes.writeUInt32LE(guestWord(i), i * 4);
    assert.equal(events[unmap]?.blobSha256, createHash("sha256").update(guestBytes).digest("hex"), "the back-end sees the bytes the guest wrote");

    // What the sample does not support gets an error response, and the guest never hangs.
    assert.equal(guestLine(g, "VHOSTKIT-SUBMIT-FENCE"), "SIGNALLED", "the fence of a refused SUBMIT_3D signals");
    at(
      cmd("SUBMIT_3D", "ERR_UNSPEC", (e) => e.ctxId === ctxId),
      "SUBMIT_3D refused with ERR_UNSPEC",
    );
    assert.equal(guestLine(g, "VHOSTKIT-UNKNOWN-CAPSET"), "Invalid argument", "the driver refuses a capset the device did not advertise");
    const refused = Number(/^resource (\d+) mmap (.*)$/.exec(guestLine(g, "VHOSTKIT-DEFAULT-CONTEXT-BLOB"))?.[1]);
    assert.match(guestLine(g, "VHOSTKIT-DEFAULT-CONTEXT-BLOB"), /mmap Invalid argument$/, "the map of a refused blob fails in the guest");
    at(
      cmd("RESOURCE_CREATE_BLOB", "ERR_INVALID_PARAMETER", (e) => e.resourceId === undefined && e.ctxId !== ctxId),
      "a host blob in a context without the capset refused",
    );
    at(cmd("RESOURCE_MAP_BLOB", "ERR_INVALID_RESOURCE_ID"), `the map of resource ${refused} refused`);
    assert.ok(guestLine(g, "VHOSTKIT-BLOB-DONE") === "", log);
    // Only those were refused (and what follows from the refused blob: attach, detach, unmap, unref).
    const refusedCmds = events.filter((e) => e.event === "command" && String(e.resp).startsWith("ERR")).map((e) => `${String(e.cmd)} ${String(e.resp)}`);
    assert.deepEqual(refusedCmds.sort(), [
      "CTX_ATTACH_RESOURCE ERR_INVALID_RESOURCE_ID",
      "CTX_DETACH_RESOURCE ERR_INVALID_RESOURCE_ID",
      "RESOURCE_CREATE_BLOB ERR_INVALID_PARAMETER",
      "RESOURCE_MAP_BLOB ERR_INVALID_RESOURCE_ID",
      "RESOURCE_UNMAP_BLOB ERR_INVALID_RESOURCE_ID",
      "RESOURCE_UNREF ERR_INVALID_RESOURCE_ID",
      "SUBMIT_3D ERR_UNSPEC",
    ]);
  });
});
