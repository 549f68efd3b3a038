/**
 * Packed virtqueues with a real guest driver (docs/virtqueue.md#packed-rings): Debian 12's Linux
 * `virtio_blk` in QEMU 7.2 and QEMU 11.1 on the RAM blk example of @vhostkit/backend as
 * `vhost-user-blk-pci,packed=on`. The driver negotiates VIRTIO_F_RING_PACKED (bit 34 in the
 * device's sysfs features), writes 1 MiB of random data, drops its page cache, reads it back from
 * the device and compares; no I/O error in its kernel log. QEMU hands the back-end the packed rings
 * (SET_VRING_ADDR: descriptor ring, driver area, device area; SET_VRING_BASE 0x8000_8000).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { runBlkGuest } from "./helpers/blk-guest.js";

for (const [peer, qemu] of [
  ["bookworm", "7.2"],
  ["sid", "11.1"],
] as const) {
  test(`Linux 6.1 virtio_blk in QEMU ${qemu} with packed=on negotiates the packed ring on the RAM blk device and verifies 1 MiB written and re-read`, {
    timeout: 110_000,
  }, async () => {
    const { features, console } = await runBlkGuest({ peer, deviceExtra: ",packed=on", blocks: 256 });
    assert.equal(features[32], "1", `VIRTIO_F_VERSION_1 negotiated by the guest: ${features}`);
    assert.equal(features[34], "1", `VIRTIO_F_RING_PACKED negotiated by the guest: ${features}\n${console}`);
  });
}
