/**
 * vhostkit MEM_READ / MEM_WRITE end to end: the RAM blk device (own process, `--mem-rw`) gets a
 * memory table without the guest page that holds the data buffer (as if it lay in another device's
 * shared memory region). The device's unchanged virtio-blk code reaches it through the fallback:
 * MEM_READ for a write request, MEM_WRITE for a read request, served here by a hand-played
 * front-end from its own guest RAM in the pinned wire format (docs/shmem.md#extension-wire-format).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { GuestRam, guestAddress } from "@vhostkit/regions";
import { sendReply } from "@vhostkit/transport";
import { HEADER_SIZE, MEM_RW_MAX_PAYLOAD, ProtocolFeature, VHOSTKIT_MEM_RW, VirtioFeature, decodeMessage, encodeReply } from "@vhostkit/wire";
import { backendChannel, DeviceProcess, ScriptedFrontend, startRing } from "./helpers/scripted-frontend.js";

const RAM_BLK = fileURLToPath(new URL("../examples/ram-blk.mjs", import.meta.url));
const MiB = 1n << 20n;

test("a buffer outside the device's memory table is read and written through MEM_READ / MEM_WRITE", async () => {
  const dev = new DeviceProcess(RAM_BLK, ["--size-mib", "1", "--mem-rw"]);
  const ram = new GuestRam({ blocks: [{ guestPhysAddr: 0n, size: 2n * MiB }] });
  try {
    await dev.line("listening");
    const fe = await ScriptedFrontend.connect(dev.socket);
    await fe.get("GET_FEATURES");
    const offered = (await fe.get("GET_PROTOCOL_FEATURES")) as bigint;
    assert.equal(offered & VHOSTKIT_MEM_RW, VHOSTKIT_MEM_RW, "offered at bit 63 when enabled");
    assert.equal(
      await fe.ack(
        "SET_PROTOCOL_FEATURES",
        ProtocolFeature.REPLY_ACK | ProtocolFeature.BACKEND_REQ | ProtocolFeature.CONFIGURE_MEM_SLOTS | ProtocolFeature.CONFIG | VHOSTKIT_MEM_RW,
      ),
      0n,
    );
    const channel = await backendChannel(fe, { maxPayload: MEM_RW_MAX_PAYLOAD });
    assert.equal(await fe.ack("SET_FEATURES", VirtioFeature.VERSION_1 | VirtioFeature.PROTOCOL_FEATURES), 0n);
    const block = ram.memoryTable()[0];
    assert.ok(block);
    // Only the first MiB goes into the device's table; the data lives at 1.5 MiB.
    assert.equal(await fe.ack("ADD_MEM_REG", { guestPhysAddr: 0n, memorySize: MiB, userAddr: block.userspaceAddr, mmapOffset: 0n }, [block.fd]), 0n);
    const { driver, call, kick } = await startRing(fe, ram);

    // The front-end's MEM_READ / MEM_WRITE service, from its own RAM.
    const served: string[] = [];
    const service = (async () => {
      for (;;) {
        let m;
        try {
          m = await channel.recv();
        } catch {
          return;
        }
        const req = decodeMessage("backend", m.frame);
        assert.equal(m.flags, 0x9, "MEM_READ/MEM_WRITE always ask for a reply");
        if (req.name === "BACKEND_MEM_READ") {
          const data = new Uint8Array(req.value.size);
          await ram.read(guestAddress(req.value.guestAddress), data);
          served.push(`read ${req.value.guestAddress.toString(16)} ${req.value.size}`);
          await sendReply(channel, m.request, encodeReply("backend", "BACKEND_MEM_READ", { guestAddress: req.value.guestAddress, data }).subarray(HEADER_SIZE));
        } else if (req.name === "BACKEND_MEM_WRITE") {
          await ram.write(guestAddress(req.value.guestAddress), req.value.data);
          served.push(`write ${req.value.guestAddress.toString(16)} ${req.value.data.length}`);
          await sendReply(channel, m.request, encodeReply("backend", "BACKEND_MEM_WRITE", 0n).subarray(HEADER_SIZE));
        } else assert.fail(`unexpected ${req.name}`);
      }
    })();

    const remote = 3n * (MiB / 2n); // 1.5 MiB: not in the device's table
    const pattern = Uint8Array.from({ length: 4096 }, (_, i) => (i * 31 + 7) & 0xff);
    await ram.write(guestAddress(remote), pattern);
    const io = async (type: number, data: bigint, write: boolean) => {
      const hdr = new Uint8Array(16);
      new DataView(hdr.buffer).setUint32(0, type, true);
      new DataView(hdr.buffer).setBigUint64(8, 8n, true);
      await ram.write(guestAddress(0x40000n), hdr);
      const buf = { addr: data, len: 4096 };
      const status = { addr: 0x50000n, len: 1 };
      driver.add(write ? [{ addr: 0x40000n, len: 16 }] : [{ addr: 0x40000n, len: 16 }, buf], write ? [buf, status] : [status]);
      driver.publish();
      kick.signal();
      await call.wait();
      const used = driver.collectUsed();
      const s = new Uint8Array(1);
      await ram.read(guestAddress(0x50000n), s);
      return { len: used[0]?.len, status: s[0] };
    };
    assert.deepEqual(await io(1, remote, false), { len: 1, status: 0 }, "blk write from the remote buffer (MEM_READ)");
    assert.deepEqual(await io(0, remote + 8192n, true), { len: 4097, status: 0 }, "blk read into a remote buffer (MEM_WRITE)");
    const back = new Uint8Array(4096);
    await ram.read(guestAddress(remote + 8192n), back);
    assert.deepEqual(back, pattern, "the bytes went to disk and came back, all through the front-end");
    assert.deepEqual(served, [`read ${remote.toString(16)} 4096`, `write ${(remote + 8192n).toString(16)} 4096`]);
    fe.close();
    channel.close();
    await service;
    kick.close();
    call.close();
  } finally {
    ram.dispose();
    await dev.stop();
  }
});
