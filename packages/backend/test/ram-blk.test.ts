/**
 * The RAM-backed blk device (examples/ram-blk.mjs) in its own process, driven by a hand-played
 * front-end in this process: QEMU 7.2's message order, ADD_MEM_REG with a non-zero mmap offset, a
 * buffer that crosses two memory regions, real virtio-blk I/O through the ring, GET_VRING_BASE,
 * and fd hygiene in the device process.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { GuestRam, guestAddress, type GuestAddress } from "@vhostkit/regions";
import { EventFd, socketPair } from "@vhostkit/transport";
import { SplitDriver, type DriverBuffer } from "@vhostkit/virtqueue/driver";
import { ProtocolFeature, VirtioFeature, type MemoryRegion } from "@vhostkit/wire";
import { DeviceProcess, ScriptedFrontend } from "./helpers/scripted-frontend.js";

const RAM_BLK = fileURLToPath(new URL("../examples/ram-blk.mjs", import.meta.url));
const MiB = 1n << 20n;
const QUEUE = 16;
const RING = 0x1000n; // desc at 0x1000, avail at 0x1100, used at 0x1200 (queue size 16)

let dev: DeviceProcess;
let baselineFds = 0;

before(async () => {
  dev = new DeviceProcess(RAM_BLK, ["--size-mib", "1", "--events"]);
  await dev.line("listening");
  baselineFds = dev.fdCount();
});

after(async () => {
  if (dev.stderr.length > 0) process.stderr.write(`device stderr:\n${dev.stderr.join("")}`);
  await dev.stop();
});

/** The guest of one test: 2 MiB of RAM, the driver side of vring 0, its kick and call eventfds. */
interface Guest extends Disposable {
  readonly ram: GuestRam;
  readonly driver: SplitDriver;
  kick: EventFd;
  readonly call: EventFd;
}

/** A {@link Guest}; `using` releases its RAM and eventfds (the kick fd in use at the end). */
function guest(): Guest {
  const ram = new GuestRam({ blocks: [{ guestPhysAddr: 0n, size: 2n * MiB }] });
  const addresses = { desc: RING, avail: RING + 0x100n, used: RING + 0x200n };
  return {
    ram,
    driver: new SplitDriver({ size: QUEUE, memory: ram, addresses, reset: true }),
    kick: EventFd.create(),
    call: EventFd.create(),
    [Symbol.dispose]() {
      this.kick.close();
      this.call.close();
      ram.dispose();
    },
  };
}

/** Handshake in QEMU 7.2's order (docs/protocol.md#negotiation-order), `g`'s memory as two ADD_MEM_REG of one memfd, one vring. */
async function setUp(fe: ScriptedFrontend, g: Guest): Promise<void> {
  const features = (await fe.get("GET_FEATURES")) as bigint;
  assert.equal(features & VirtioFeature.VERSION_1, VirtioFeature.VERSION_1);
  assert.equal(features & VirtioFeature.PROTOCOL_FEATURES, VirtioFeature.PROTOCOL_FEATURES);
  assert.equal(features & (1n << 9n), 1n << 9n, "FLUSH offered by the device");
  const pf = (await fe.get("GET_PROTOCOL_FEATURES")) as bigint;
  for (const f of [ProtocolFeature.REPLY_ACK, ProtocolFeature.CONFIG, ProtocolFeature.BACKEND_REQ, ProtocolFeature.CONFIGURE_MEM_SLOTS, ProtocolFeature.MQ]) {
    assert.equal(pf & f, f);
  }
  assert.equal(pf & ProtocolFeature.SHMEM, 0n, "no shared memory regions, no SHMEM");
  assert.equal(await fe.ack("SET_PROTOCOL_FEATURES", pf), 0n);
  assert.equal(await fe.get("GET_QUEUE_NUM"), 1n);
  assert.equal(await fe.get("GET_MAX_MEM_SLOTS"), 509n);
  const [mine, theirs] = socketPair();
  try {
    assert.equal(await fe.ack("SET_BACKEND_REQ_FD", undefined, [theirs.fd]), 0n, "accepted before SET_OWNER");
  } finally {
    theirs.close();
    mine.close();
  }
  assert.equal(await fe.ack("SET_VRING_CALL", { index: 0, noFd: false }, [g.call.fd]), 0n, "accepted before SET_OWNER");
  assert.equal(await fe.ack("SET_OWNER"), 0n);
  const config = (await fe.get("GET_CONFIG", { offset: 0, flags: 0, data: new Uint8Array(60) })) as { data: Uint8Array };
  assert.equal(config.data.length, 60);
  const cv = new DataView(config.data.buffer, config.data.byteOffset);
  assert.equal(cv.getBigUint64(0, true), 2048n, "capacity in sectors");
  // A driver honouring size_max and seg_max (Linux does) never sends more than the device serves (1 MiB).
  assert.equal(features & (1n << 1n), 1n << 1n, "SIZE_MAX offered");
  assert.ok(cv.getUint32(8, true) > 0 && cv.getUint32(12, true) > 0, "size_max and seg_max set");
  assert.ok(BigInt(cv.getUint32(8, true) * cv.getUint32(12, true)) <= MiB, "seg_max x size_max within the largest request served");
  assert.equal(await fe.ack("SET_FEATURES", VirtioFeature.VERSION_1 | VirtioFeature.PROTOCOL_FEATURES | (1n << 9n)), 0n);

  const block = g.ram.memoryTable()[0];
  assert.ok(block);
  // Two regions of one memfd, the second at mmap_offset 1 MiB, as QEMU sends them.
  for (const half of [0n, 1n]) {
    const region: MemoryRegion = { guestPhysAddr: half * MiB, memorySize: MiB, userAddr: block.userspaceAddr + half * MiB, mmapOffset: half * MiB };
    assert.equal(await fe.ack("ADD_MEM_REG", region, [block.fd]), 0n);
  }
  const user = (a: bigint) => g.ram.userAddressOf(guestAddress(a));
  assert.equal(await fe.ack("SET_VRING_NUM", { index: 0, num: QUEUE }), 0n);
  assert.equal(await fe.ack("SET_VRING_BASE", { index: 0, num: 0 }), 0n);
  assert.equal(
    await fe.ack("SET_VRING_ADDR", { index: 0, flags: 0, descAddr: user(RING), usedAddr: user(RING + 0x200n), availAddr: user(RING + 0x100n), logAddr: 0n }),
    0n,
  );
  assert.equal(await fe.ack("SET_VRING_KICK", { index: 0, noFd: false }, [g.kick.fd]), 0n);
  assert.equal(await fe.ack("SET_VRING_ENABLE", { index: 0, num: 1 }), 0n);
}

/** One virtio-blk request: 16-byte header, data, status; returns the used length and the status. */
async function blk(
  g: Guest,
  type: number,
  sector: bigint,
  data: { addr: bigint; len: number; write: boolean } | undefined,
): Promise<{ len: number; status: number }> {
  const hdr = new Uint8Array(16);
  const hv = new DataView(hdr.buffer);
  hv.setUint32(0, type, true);
  hv.setBigUint64(8, sector, true);
  const hdrAddr = guestAddress(0x40000n);
  const statusAddr = guestAddress(0x50000n);
  await g.ram.write(hdrAddr, hdr);
  await g.ram.write(statusAddr, new Uint8Array([0xff]));
  const readable: DriverBuffer[] = [{ addr: hdrAddr, len: 16 }];
  const writable: DriverBuffer[] = [{ addr: statusAddr, len: 1 }];
  if (data) (data.write ? writable : readable).splice(data.write ? 0 : 1, 0, { addr: data.addr, len: data.len });
  g.driver.add(readable, writable);
  g.driver.publish();
  g.kick.signal();
  await g.call.wait();
  const used = g.driver.collectUsed();
  assert.equal(used.length, 1);
  const status = new Uint8Array(1);
  await g.ram.read(statusAddr, status);
  return { len: used[0]?.len ?? -1, status: status[0] ?? -1 };
}

describe("RAM blk device over a real socket, driven in QEMU 7.2's order", () => {
  test("write then read through the ring, across two regions; IOERR past the end; GET_ID; GET_VRING_BASE", async () => {
    const disconnected = dev.next("event disconnected");
    using g = guest();
    using fe = await ScriptedFrontend.connect(dev.socket);
    await setUp(fe, g);
    const pattern = Uint8Array.from({ length: 1024 }, (_, i) => (i * 7 + 3) & 0xff);
    const across = 0x100000n - 0x200n; // 1 KiB buffer spanning the two ADD_MEM_REG regions
    await g.ram.write(guestAddress(across), pattern);
    assert.deepEqual(await blk(g, 1, 2n, { addr: across, len: 1024, write: false }), { len: 1, status: 0 });
    const back = guestAddress(0x60000n);
    assert.deepEqual(await blk(g, 0, 2n, { addr: back, len: 1024, write: true }), { len: 1025, status: 0 });
    const got = new Uint8Array(1024);
    await g.ram.read(back as GuestAddress, got);
    assert.deepEqual(got, pattern);
    assert.deepEqual((await blk(g, 0, 2047n, { addr: back, len: 1024, write: true })).status, 1, "read past the end: IOERR");
    const id = await blk(g, 8, 0n, { addr: back, len: 20, write: true });
    assert.equal(id.status, 0);
    const idBytes = new Uint8Array(16);
    await g.ram.read(back as GuestAddress, idBytes);
    assert.equal(new TextDecoder().decode(idBytes), "vhostkit-ram-blk");
    assert.deepEqual(await blk(g, 4, 0n, undefined), { len: 1, status: 0 }, "flush");
    // A new kick fd for the started ring (a front-end switching notifiers): only the kick is
    // replaced; the call fd stays, so this completion is still signalled on it.
    g.kick.close(); // the device keeps its own copy until it gets the new one
    g.kick = EventFd.create();
    assert.equal(await fe.ack("SET_VRING_KICK", { index: 0, noFd: false }, [g.kick.fd]), 0n);
    assert.deepEqual(await blk(g, 4, 0n, undefined), { len: 1, status: 0 }, "served after the re-kick");
    // SET_VRING_ENABLE(0): a kicked chain waits until the ring is enabled again.
    assert.equal(await fe.ack("SET_VRING_ENABLE", { index: 0, num: 0 }), 0n);
    await g.ram.write(guestAddress(0x40000n), Uint8Array.of(4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)); // FLUSH
    g.driver.add([{ addr: guestAddress(0x40000n), len: 16 }], [{ addr: guestAddress(0x50000n), len: 1 }]);
    g.driver.publish();
    g.kick.signal();
    // A round trip: the kick was signalled before this request was sent, so by the reply the device
    // has seen it (and, the ring disabled, left the chain alone).
    assert.equal(await fe.get("GET_QUEUE_NUM"), 1n);
    assert.equal(g.driver.collectUsed().length, 0, "a disabled ring is not served");
    assert.equal(await fe.ack("SET_VRING_ENABLE", { index: 0, num: 1 }), 0n);
    await g.call.wait();
    assert.equal(g.driver.collectUsed().length, 1, "served once enabled");
    assert.deepEqual(await fe.get("GET_VRING_BASE", { index: 0, num: 0 }), { index: 0, num: 7 });
    fe.close();
    await disconnected;
    assert.equal(dev.fdCount(), baselineFds, "the device closed every fd it received");
  });

  test("a looping descriptor chain breaks only that queue and signals its err fd; STATUS and RESET_DEVICE", async () => {
    const disconnected = dev.next("event disconnected");
    using g = guest();
    using fe = await ScriptedFrontend.connect(dev.socket);
    await setUp(fe, g);
    using err = EventFd.create();
    assert.equal(await fe.ack("SET_VRING_ERR", { index: 0, noFd: false }, [err.fd]), 0n);
    assert.equal(await fe.ack("SET_STATUS", 0x0fn), 0n);
    assert.equal(await fe.get("GET_STATUS"), 0x0fn);
    // Hand-written ring: descriptor 0 chains to itself (a loop), made available at avail.idx 1.
    const desc = new Uint8Array(16);
    const dv = new DataView(desc.buffer);
    dv.setBigUint64(0, 0x40000n, true);
    dv.setUint32(8, 16, true);
    dv.setUint16(12, 1, true); // NEXT
    dv.setUint16(14, 0, true); // next = itself
    await g.ram.write(guestAddress(RING), desc);
    await g.ram.write(guestAddress(RING + 0x100n + 4n), new Uint8Array([0, 0])); // avail.ring[0] = 0
    await g.ram.write(guestAddress(RING + 0x100n + 2n), new Uint8Array([1, 0])); // avail.idx = 1
    const broken = dev.next("event queue-broken");
    g.kick.signal();
    assert.equal(await err.wait(), 1n, "the err fd was signalled");
    await broken;
    assert.equal(await fe.get("GET_QUEUE_NUM"), 1n, "the connection survives a broken queue");
    assert.equal(await fe.ack("RESET_DEVICE"), 0n);
    assert.equal(await fe.get("GET_STATUS"), 0n, "reset clears the status");
    assert.deepEqual(await fe.get("GET_VRING_BASE", { index: 0, num: 0 }), { index: 0, num: 0 }, "rings stopped by the reset");
    using kickAgain = EventFd.create();
    assert.equal(await fe.ack("SET_VRING_KICK", { index: 0, noFd: false }, [kickAgain.fd]), 1n, "the reset forgot the ring's size and addresses");
    fe.close();
    await disconnected;
  });

  test("SET_MEM_TABLE, missing fds, polling flags, SET_CONFIG, SET_LOG_BASE and RESET_OWNER", async () => {
    const disconnected = dev.next("event disconnected");
    using fe = await ScriptedFrontend.connect(dev.socket);
    using ram = new GuestRam({ blocks: [{ guestPhysAddr: 0n, size: 2n * MiB }] });
    using kick = EventFd.create();
    using call = EventFd.create();
    // No CONFIGURE_MEM_SLOTS: the memory table comes whole.
    assert.equal(await fe.ack("SET_PROTOCOL_FEATURES", ProtocolFeature.REPLY_ACK | ProtocolFeature.CONFIG), 0n);
    assert.equal(await fe.ack("SET_OWNER"), 0n);
    assert.equal(await fe.ack("SET_FEATURES", VirtioFeature.VERSION_1 | VirtioFeature.PROTOCOL_FEATURES), 0n);
    const block = ram.memoryTable()[0];
    assert.ok(block);
    const regions = [0n, 1n].map((h) => ({ guestPhysAddr: h * MiB, memorySize: MiB, userAddr: block.userspaceAddr + h * MiB, mmapOffset: h * MiB }));
    assert.equal(await fe.ack("SET_MEM_TABLE", { regions }, [block.fd]), 1n, "two regions, one fd");
    assert.equal(await fe.ack("ADD_MEM_REG", regions[0], [block.fd]), 1n, "ADD_MEM_REG needs CONFIGURE_MEM_SLOTS");
    assert.equal(await fe.ack("SET_MEM_TABLE", { regions }, [block.fd, block.fd]), 0n);
    // The ring in the second region (mmap_offset 1 MiB), buffers in the first: one blk request works.
    const addresses = { desc: MiB + 0x1000n, avail: MiB + 0x1100n, used: MiB + 0x1200n };
    const driver = new SplitDriver({ size: QUEUE, memory: ram, addresses, reset: true });
    const user = (a: bigint) => ram.userAddressOf(guestAddress(a));
    assert.equal(await fe.ack("SET_VRING_NUM", { index: 0, num: QUEUE }), 0n);
    assert.equal(
      await fe.ack("SET_VRING_ADDR", {
        index: 0,
        flags: 0,
        descAddr: user(addresses.desc),
        usedAddr: user(addresses.used),
        availAddr: user(addresses.avail),
        logAddr: 0n,
      }),
      0n,
    );
    assert.equal(await fe.ack("SET_VRING_CALL", { index: 0, noFd: true }), 0n, "no call fd (a driver that polls the used ring) is accepted");
    assert.equal(await fe.ack("SET_VRING_CALL", { index: 0, noFd: false }, [call.fd]), 0n, "and a call fd after all, to wait on");
    assert.equal(await fe.ack("SET_VRING_KICK", { index: 0, noFd: false }), 1n, "a kick without its fd");
    assert.equal(await fe.ack("SET_VRING_KICK", { index: 0, noFd: true }), 1n, "polling mode is refused (UNSUPPORTED)");
    assert.equal(await fe.ack("SET_VRING_KICK", { index: 0, noFd: false }, [kick.fd]), 0n);
    assert.equal(await fe.ack("SET_VRING_ENABLE", { index: 0, num: 1 }), 0n);
    const hdr = new Uint8Array(16);
    new DataView(hdr.buffer).setUint32(0, 8, true); // GET_ID
    await ram.write(guestAddress(0x40000n), hdr);
    driver.add(
      [{ addr: guestAddress(0x40000n), len: 16 }],
      [
        { addr: guestAddress(0x60000n), len: 20 },
        { addr: guestAddress(0x50000n), len: 1 },
      ],
    );
    driver.publish();
    kick.signal();
    await call.wait();
    assert.equal(driver.collectUsed().length, 1, "the request completed with the ring and buffers in the SET_MEM_TABLE regions");
    const id = new Uint8Array(16);
    await ram.read(guestAddress(0x60000n), id);
    assert.equal(new TextDecoder().decode(id), "vhostkit-ram-blk");
    // Writable config: this device has none.
    assert.equal(await fe.ack("SET_CONFIG", { offset: 0, flags: 0, data: new Uint8Array(4) }), 1n, "read-only config space");
    // Dirty logging (docs/protocol.md#dirty-page-logging): SET_LOG_BASE without LOG_SHMFD negotiated is refused,
    // its fd closed in the device; SET_LOG_FD takes its eventfd.
    using log = EventFd.create();
    assert.equal(await fe.ack("SET_LOG_BASE", { mmapSize: 4096n, mmapOffset: 0n }, [log.fd]), 1n);
    assert.equal(await fe.ack("SET_LOG_FD", undefined, [log.fd]), 0n, "SET_LOG_FD accepted");
    // RESET_OWNER stops the rings; the connection goes on and can be set up again.
    assert.equal(await fe.ack("RESET_OWNER"), 0n);
    assert.deepEqual(await fe.get("GET_VRING_BASE", { index: 0, num: 0 }), { index: 0, num: 1 }, "stopped at the one chain it served");
    assert.equal(await fe.ack("SET_OWNER"), 0n);
    assert.equal(await fe.get("GET_QUEUE_NUM"), 1n);
    fe.close();
    await disconnected;
    assert.equal(dev.fdCount(), baselineFds, "every fd the device received was closed");
  });

  test("hostile requests get failure acks and the connection stays; unanswerable ones drop the front-end; fds are closed", async () => {
    const dropped = dev.next("event dropped NOT_NEGOTIATED");
    using fe = await ScriptedFrontend.connect(dev.socket);
    using stray = EventFd.create();
    using ram = new GuestRam({ blocks: [{ guestPhysAddr: 0n, size: MiB }] });
    using kick = EventFd.create();
    assert.equal(await fe.ack("SET_PROTOCOL_FEATURES", ProtocolFeature.REPLY_ACK | ProtocolFeature.CONFIGURE_MEM_SLOTS), 0n);
    // Wrong payload size for SET_VRING_NUM (4 bytes instead of 8).
    await fe.ep.send(8, 0x9, new Uint8Array(4));
    assert.equal((await fe.reply("SET_VRING_NUM")).value, 1n);
    // An fd on a message that carries none: refused, the fd closed in the device.
    assert.equal(await fe.ack("SET_OWNER", undefined, [stray.fd]), 1n);
    assert.equal(await fe.ack("SET_FEATURES", 1n << 0n), 1n, "feature bit 0 was not offered");
    assert.equal(await fe.ack("SET_VRING_NUM", { index: 0, num: 3 }), 1n, "not a power of two");
    assert.equal(await fe.ack("SET_VRING_NUM", { index: 5, num: 16 }), 1n, "no such queue");
    // A misaligned descriptor table (our encoder refuses to write one, so the bytes are hand-made).
    const addr = new Uint8Array(40);
    new DataView(addr.buffer).setBigUint64(8, 0x1001n, true);
    await fe.ep.send(9, 0x9, addr);
    assert.equal((await fe.reply("SET_VRING_ADDR")).value, 1n, "misaligned");
    // Overlapping regions in one ADD_MEM_REG sequence.
    const fd = ram.memoryTable()[0]?.fd ?? -1;
    const region = { guestPhysAddr: 0n, memorySize: MiB, userAddr: 0x7000_0000_0000n, mmapOffset: 0n };
    assert.equal(await fe.ack("ADD_MEM_REG", region, [fd]), 0n);
    assert.equal(await fe.ack("ADD_MEM_REG", { ...region, userAddr: 0x7100_0000_0000n }, [fd]), 1n, "GPA overlap");
    // Ring addresses outside memory: the ring cannot start.
    assert.equal(await fe.ack("SET_VRING_NUM", { index: 0, num: 16 }), 0n);
    assert.equal(
      await fe.ack("SET_VRING_ADDR", {
        index: 0,
        flags: 0,
        descAddr: 0x9000_0000_0000n,
        usedAddr: 0x9000_0000_1000n,
        availAddr: 0x9000_0000_2000n,
        logAddr: 0n,
      }),
      0n,
    );
    assert.equal(await fe.ack("SET_VRING_KICK", { index: 0, noFd: false }, [kick.fd]), 1n, "rings outside guest memory");
    assert.equal(await fe.get("GET_QUEUE_NUM"), 1n, "still serving after every refusal");
    // An always-replied request for a feature that was not negotiated cannot be answered: dropped.
    await fe.send("GET_SHMEM_CONFIG", undefined);
    await assert.rejects(fe.ep.recv(), (e: unknown) => (e as { code?: string }).code === "EOF");
    await dropped;
    fe.close();
    // Unknown request id without NEED_REPLY, then a bad header: dropped each time, next front-end served.
    for (const frame of [
      [99, 0x1, 0],
      [1, 0x2, 0],
    ] as const) {
      using f = await ScriptedFrontend.connect(dev.socket);
      await f.ep.send(frame[0], frame[1], new Uint8Array(frame[2]));
      await assert.rejects(f.ep.recv(), (e: unknown) => (e as { code?: string }).code === "EOF");
    }
    const disconnected = dev.next("event disconnected");
    using last = await ScriptedFrontend.connect(dev.socket);
    assert.ok(((await last.get("GET_FEATURES")) as bigint) > 0n);
    last.close();
    await disconnected;
    assert.equal(dev.fdCount(), baselineFds, "no fd leaked in the device across all of it");
    assert.equal(dev.child.exitCode, null, "the device process is still up");
  });
});
