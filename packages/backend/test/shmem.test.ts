/**
 * VIRTIO Shared Memory Regions from the device side, device in its own process
 * (fixtures/shmem-device.mjs): GET_SHMEM_CONFIG per dialect, SHMEM_MAP only while running (QEMU
 * 11.1.3 crashes otherwise), the map's payload, fd and NEED_REPLY, and no UNMAP after the stop.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { GuestRam, guestAddress } from "@vhostkit/regions";
import { EventFd, sendAck, type Endpoint, type ReceivedMessage } from "@vhostkit/transport";
import { BackendRequest, Dialects, ProtocolFeature, VirtioFeature, decodeMessage, type DialectName } from "@vhostkit/wire";
import { backendChannel, DeviceProcess, ScriptedFrontend } from "./helpers/scripted-frontend.js";

const DEVICE = fileURLToPath(new URL("./fixtures/shmem-device.mjs", import.meta.url));
const MiB = 1n << 20n;

/** Negotiate, set up one started vring; returns the back-end channel (our end) and the guest pieces. */
async function runDevice(fe: ScriptedFrontend, dialect: DialectName): Promise<{ channel: Endpoint; cleanup: () => void }> {
  const d = Dialects[dialect];
  await fe.get("GET_FEATURES");
  const offered = (await fe.get("GET_PROTOCOL_FEATURES")) as bigint;
  assert.equal(offered & d.shmemFeature, d.shmemFeature, `${dialect}: SHMEM offered at its own bit`);
  const want = ProtocolFeature.REPLY_ACK | ProtocolFeature.BACKEND_REQ | ProtocolFeature.BACKEND_SEND_FD | ProtocolFeature.CONFIGURE_MEM_SLOTS | d.shmemFeature;
  assert.equal(await fe.ack("SET_PROTOCOL_FEATURES", want), 0n);
  const channel = await backendChannel(fe);
  assert.equal(await fe.ack("SET_OWNER"), 0n);
  if (d.layout === "crosvm") {
    const r = (await fe.get("GET_SHARED_MEMORY_REGIONS")) as { regions: { id: number; length: bigint }[] };
    assert.deepEqual(r.regions, [
      { id: 1, length: MiB },
      { id: 3, length: 1n << 16n },
    ]);
  } else {
    const c = (await fe.get("GET_SHMEM_CONFIG")) as { nregions: number; sizes: bigint[] };
    assert.equal(c.nregions, 2, "nregions counts the non-zero entries");
    assert.equal(c.sizes[1], MiB);
    assert.equal(c.sizes[3], 1n << 16n);
    assert.equal(c.sizes.filter((s) => s !== 0n).length, 2);
  }
  assert.equal(await fe.ack("SET_FEATURES", VirtioFeature.VERSION_1 | VirtioFeature.PROTOCOL_FEATURES), 0n);
  const ram = new GuestRam({ blocks: [{ guestPhysAddr: 0n, size: MiB }] });
  const block = ram.memoryTable()[0];
  assert.ok(block);
  assert.equal(await fe.ack("ADD_MEM_REG", { guestPhysAddr: 0n, memorySize: MiB, userAddr: block.userspaceAddr, mmapOffset: 0n }, [block.fd]), 0n);
  const u = (a: bigint) => ram.userAddressOf(guestAddress(a));
  assert.equal(await fe.ack("SET_VRING_NUM", { index: 0, num: 16 }), 0n);
  assert.equal(await fe.ack("SET_VRING_ADDR", { index: 0, flags: 0, descAddr: u(0x1000n), usedAddr: u(0x1200n), availAddr: u(0x1100n), logAddr: 0n }), 0n);
  const kick = EventFd.create();
  assert.equal(await fe.ack("SET_VRING_KICK", { index: 0, noFd: false }, [kick.fd]), 0n);
  return {
    channel,
    cleanup: () => {
      kick.close();
      ram.dispose();
      channel.close();
    },
  };
}

for (const dialect of ["upstream", "rust-vmm-0.16", "crosvm-legacy"] as const) {
  describe(`shared memory device, ${dialect} dialect`, () => {
    test("no map before the device runs; SHMEM_MAP once running, acked; no UNMAP after GET_VRING_BASE", async () => {
      const dev = new DeviceProcess(DEVICE, ["--dialect", dialect]);
      try {
        await dev.line("listening");
        const fe = await ScriptedFrontend.connect(dev.socket, Dialects[dialect]);
        const early = dev.next("early-map");
        const { channel, cleanup } = await runDevice(fe, dialect);
        assert.match(await early, /early-map-refused.*NOT_RUNNING/, "a map before DRIVER_OK/start is refused locally");
        const m: ReceivedMessage = await channel.recv();
        const d = Dialects[dialect];
        assert.equal(m.request, d.shmemMapRequest, "the first back-end request is the real map (the early one never left)");
        assert.equal(m.fds.length, 1, "exactly one fd");
        const req = decodeMessage("backend", m.frame, d);
        if (d.layout === "crosvm") {
          assert.equal(m.flags, 0x1, "crosvm legacy replies are mandatory, no NEED_REPLY needed");
          assert.deepEqual(req.value, { flags: 0x3, shmid: 1, shmOffset: 0x10000n, fdOffset: 0n, len: 0x10000n });
        } else {
          assert.equal(m.flags, 0x9, "NEED_REPLY with REPLY_ACK negotiated");
          assert.deepEqual(req.value, { shmid: 1, fdOffset: 0n, shmOffset: 0x10000n, len: 0x10000n, flags: 1n });
          assert.deepEqual([...m.frame.subarray(13, 20)], [0, 0, 0, 0, 0, 0, 0], "padding sent as zero");
        }
        for (const f of m.fds) f.close();
        const mapped = dev.next("mapped");
        await sendAck(channel, m.request, 0n);
        assert.match(await mapped, /"step":"mapped"/);
        const refused = dev.next("unmap-after-stop");
        assert.deepEqual(await fe.get("GET_VRING_BASE", { index: 0, num: 0 }), { index: 0, num: 0 });
        assert.match(await refused, /unmap-after-stop-refused.*NOT_RUNNING/, "no UNMAP reaches a stopped front-end");
        fe.close();
        cleanup();
      } finally {
        await dev.stop();
      }
    });
  });
}

test("rust-vmm 0.16 and upstream use different SHMEM bits: BackendRequest ids stay 9/10", () => {
  assert.equal(Dialects["rust-vmm-0.16"].shmemFeature, 1n << 21n);
  assert.equal(Dialects.upstream.shmemFeature, 1n << 22n);
  assert.equal(Dialects.upstream.shmemMapRequest, BackendRequest.BACKEND_SHMEM_MAP);
});
