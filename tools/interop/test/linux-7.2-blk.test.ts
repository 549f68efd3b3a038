/**
 * A real guest driver: Debian 12's Linux kernel (its `virtio_blk` module over `virtio_pci`) in QEMU
 * 7.2 (TCG) drives the RAM blk example of @vhostkit/backend as `vhost-user-blk-pci`. The guest
 * writes 256 KiB of random data at an offset, drops its page cache, reads the blocks back from the
 * device and compares; its kernel log must show no I/O error. The kernel, the modules and a static
 * busybox come from Debian without root (tools/peers `fetch.sh guest`); the initramfs is built by
 * the test (helpers/blk-guest.ts). QEMU's default is `packed=off`: the split ring
 * (linux-packed-blk.test.ts runs the packed one).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { runBlkGuest } from "./helpers/blk-guest.js";

test("Linux 6.1 virtio_blk in QEMU 7.2 writes, re-reads and verifies 256 KiB on the RAM blk device; no I/O error in the kernel log", {
  timeout: 110_000,
}, async () => {
  const { features } = await runBlkGuest({ peer: "bookworm" });
  assert.equal(features[32], "1", `VIRTIO_F_VERSION_1 negotiated by the guest: ${features}`);
  assert.equal(features[34], "0", `split ring (packed=off): ${features}`);
});
