/**
 * The virtio-net example device (examples/net-device.mjs) in its own process, driven by a
 * hand-played front-end in DPDK virtio_user's order (docs/virtio-net.md#dpdks-front-end): SET_OWNER
 * first, SET_VRING_CALL before SET_FEATURES and the memory table, no GET_QUEUE_NUM / GET_CONFIG /
 * SET_BACKEND_REQ_FD, one memory region whose guest address is the front-end's own virtual address,
 * SET_STATUS with NEED_REPLY, the second queue pair enabled after DRIVER_OK. Then frames: reflected,
 * merged over several receive buffers, and hostile input breaking one queue only.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { GuestRam, guestAddress } from "@vhostkit/regions";
import { EventFd } from "@vhostkit/transport";
import { SplitDriver } from "@vhostkit/virtqueue/driver";
import { ProtocolFeature, VirtioFeature } from "@vhostkit/wire";
import { DeviceProcess, ScriptedFrontend } from "./helpers/scripted-frontend.js";

const NET_DEVICE = fileURLToPath(new URL("../examples/net-device.mjs", import.meta.url));
const MRG_RXBUF = 1n << 15n;
const MAC = 1n << 5n;
const STATUS = 1n << 16n;
const CTRL_VQ = 1n << 17n;
const MQ = 1n << 22n;
const QUEUE = 16;
const QUEUES = 5; // two pairs and the control queue

let dev: DeviceProcess;
let baselineFds = 0;
before(async () => {
  dev = new DeviceProcess(NET_DEVICE, ["--mode", "reflect", "--pairs", "2", "--events"]);
  await dev.line("listening");
  baselineFds = dev.fdCount();
});
after(async () => {
  if (dev.stderr.length > 0) process.stderr.write(`device stderr:\n${dev.stderr.join("")}`);
  await dev.stop();
});

/** One front-end: 2 MiB of RAM, the driver side and eventfds of all five queues. */
class Port implements Disposable {
  readonly ram = new GuestRam({ blocks: [{ guestPhysAddr: 0n, size: 2n << 20n }] });
  readonly rings = Array.from({ length: QUEUES }, (_, i) => {
    const base = 0x1000n * BigInt(i + 1);
    const addresses = { desc: base, avail: base + 0x100n, used: base + 0x200n };
    return { addresses, driver: new SplitDriver({ size: QUEUE, memory: this.ram, addresses, reset: true }), kick: EventFd.create(), call: EventFd.create() };
  });
  #next = 0x100000n;
  /** The address the device sees for guest address `a`: DPDK's IOVA is its virtual address. */
  va = (a: bigint) => this.ram.userAddressOf(guestAddress(a)) as bigint;
  /** A buffer of `len` bytes (guest address), holding `data` if given. */
  async buffer(len: number, data?: Uint8Array): Promise<bigint> {
    const at = this.#next;
    this.#next += BigInt((len + 0xfff) & ~0xfff);
    if (data) await this.ram.write(guestAddress(at), data);
    return at;
  }
  [Symbol.dispose](): void {
    for (const r of this.rings) r.kick.close(), r.call.close();
    this.ram.dispose();
  }
}

/** DPDK 22.11 virtio_user's set-up (its order and flags, as a vhost-user trace of testpmd shows). */
async function setUpLikeDpdk(fe: ScriptedFrontend, p: Port, features: bigint): Promise<void> {
  await fe.send("SET_OWNER", undefined);
  const offered = (await fe.get("GET_FEATURES")) as bigint;
  for (const f of [MAC, STATUS, CTRL_VQ, MQ, MRG_RXBUF, VirtioFeature.VERSION_1]) assert.equal(offered & f, f);
  const pf = (await fe.get("GET_PROTOCOL_FEATURES")) as bigint;
  const want = ProtocolFeature.MQ | ProtocolFeature.REPLY_ACK | ProtocolFeature.STATUS;
  assert.equal(pf & want, want);
  await fe.send("SET_PROTOCOL_FEATURES", want);
  for (let i = 0; i < 2; i++) await fe.send("SET_VRING_CALL", { index: i, noFd: false }, { fds: [p.rings[i]!.call.fd] });
  await fe.send("SET_FEATURES", features);
  assert.equal(await fe.ack("SET_STATUS", 0xbn), 0n, "ACKNOWLEDGE | DRIVER | FEATURES_OK");
  assert.equal(await fe.get("GET_STATUS"), 0xbn);
  const block = p.ram.memoryTable()[0]!;
  const region = { guestPhysAddr: block.userspaceAddr, memorySize: block.memorySize, userAddr: block.userspaceAddr, mmapOffset: 0n };
  assert.equal(await fe.ack("SET_MEM_TABLE", { padding: 0, regions: [region] }, [block.fd]), 0n, "one region, guest address = virtual address");
  for (let i = 0; i < QUEUES; i++) {
    const r = p.rings[i]!;
    await fe.send("SET_VRING_NUM", { index: i, num: QUEUE });
    await fe.send("SET_VRING_BASE", { index: i, num: 0 });
    const a = r.addresses;
    await fe.send("SET_VRING_ADDR", { index: i, flags: 0, descAddr: p.va(a.desc), usedAddr: p.va(a.used), availAddr: p.va(a.avail), logAddr: 0n });
    if (i >= 2) await fe.send("SET_VRING_CALL", { index: i, noFd: false }, { fds: [r.call.fd] });
    await fe.send("SET_VRING_KICK", { index: i, noFd: false }, { fds: [r.kick.fd] });
  }
  for (let i = 0; i < 2; i++) await fe.send("SET_VRING_ENABLE", { index: i, num: 1 });
  assert.equal(await fe.ack("SET_STATUS", 0xfn), 0n, "DRIVER_OK");
  for (let i = 2; i < QUEUES; i++) await fe.send("SET_VRING_ENABLE", { index: i, num: 1 });
  assert.equal(await fe.get("GET_STATUS"), 0xfn, "every request above was served");
}

/** An Ethernet frame of `len` bytes: dst 02:..:01, src 02:..:02, then a counting pattern. */
function frame(len: number): Uint8Array {
  const f = new Uint8Array(len).map((_, i) => (i * 7 + 3) & 0xff);
  f.set([2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2], 0);
  return f;
}

/** Sends `f` (12-byte zero header in front) on transmitq `q`; returns its used length. */
async function transmit(p: Port, q: number, f: Uint8Array): Promise<void> {
  const pkt = new Uint8Array(12 + f.length);
  pkt.set(f, 12);
  const at = await p.buffer(pkt.length, pkt);
  const r = p.rings[q]!;
  r.driver.add([{ addr: p.va(at), len: pkt.length }], []);
  r.driver.publish();
  r.kick.signal();
}

/** Posts `count` receive buffers of `len` bytes on receiveq `q`; returns their guest addresses. */
async function postRx(p: Port, q: number, count: number, len: number): Promise<bigint[]> {
  const r = p.rings[q]!;
  const out: bigint[] = [];
  for (let i = 0; i < count; i++) {
    const at = await p.buffer(len);
    r.driver.add([], [{ addr: p.va(at), len }], at);
    out.push(at);
  }
  r.driver.publish();
  return out;
}

const read = async (p: Port, at: bigint, len: number) => {
  const b = new Uint8Array(len);
  await p.ram.read(guestAddress(at), b);
  return b;
};
const swapped = (f: Uint8Array) => Uint8Array.of(...f.subarray(6, 12), ...f.subarray(0, 6), ...f.subarray(12));

describe("virtio-net device, DPDK virtio_user's order", () => {
  test("reflect: frames come back MAC-swapped, merged over several buffers when they need them; hostile input breaks one queue", {
    timeout: 20000,
  }, async () => {
    using p = new Port();
    using fe = await ScriptedFrontend.connect(dev.socket);
    await setUpLikeDpdk(fe, p, VirtioFeature.VERSION_1 | VirtioFeature.PROTOCOL_FEATURES | MAC | STATUS | MQ | MRG_RXBUF);
    assert.equal(dev.lines.filter((l) => l.startsWith("event rejected")).length, 0, "no request refused");

    // Pair 0: a 60-byte frame into 1536-byte buffers.
    const [rx0] = await postRx(p, 0, 2, 1536);
    const f = frame(60);
    await transmit(p, 1, f);
    await p.rings[0]!.call.wait();
    const used = p.rings[0]!.driver.collectUsed();
    assert.deepEqual(
      used.map((u) => [u.token, u.len]),
      [[rx0, 72]],
    );
    const got = await read(p, rx0!, 72);
    assert.equal(got[10]! | (got[11]! << 8), 1, "num_buffers");
    assert.deepEqual(got.subarray(12), swapped(f));
    // The transmitq's used entry is published in its own batch, possibly after the receiveq's call.
    let txUsed = p.rings[1]!.driver.collectUsed();
    if (txUsed.length === 0) {
      await p.rings[1]!.call.wait();
      txUsed = p.rings[1]!.driver.collectUsed();
    }
    assert.deepEqual(
      txUsed.map((u) => u.len),
      [0],
      "the transmit buffer is returned",
    );

    // Pair 1: a 1000-byte frame over 512-byte buffers (MRG_RXBUF): two buffers, num_buffers 2.
    const bufs = await postRx(p, 2, 4, 512);
    const big = frame(1000);
    await transmit(p, 3, big);
    await p.rings[2]!.call.wait();
    assert.deepEqual(
      p.rings[2]!.driver.collectUsed().map((u) => [u.token, u.len]),
      [
        [bufs[0], 512],
        [bufs[1], 500],
      ],
    );
    const merged = new Uint8Array([...(await read(p, bufs[0]!, 512)), ...(await read(p, bufs[1]!, 500))]);
    assert.equal(merged[10], 2, "num_buffers");
    assert.deepEqual(merged.subarray(12), swapped(big));

    // A transmit chain shorter than the header breaks transmitq 0 only; pair 1 still reflects.
    const broken = dev.next("event queue-broken 1 ");
    const tx0 = await p.buffer(8);
    p.rings[1]!.driver.add([{ addr: p.va(tx0), len: 8 }], []);
    p.rings[1]!.driver.publish();
    p.rings[1]!.kick.signal();
    assert.match(await broken, /NET_SHORT_HEADER/);
    await transmit(p, 3, f);
    await p.rings[2]!.call.wait();
    assert.deepEqual(
      p.rings[2]!.driver.collectUsed().map((u) => [u.token, u.len]),
      [[bufs[2], 72]],
    );

    // The control queue: VQ_PAIRS_SET 2 is acked OK, 3 (more than max_virtqueue_pairs) ERR; a 1-byte command breaks it.
    const ctrl = async (cmd: number[]): Promise<number> => {
      const at = await p.buffer(64, Uint8Array.from(cmd));
      const ack = at + 32n;
      p.rings[4]!.driver.add([{ addr: p.va(at), len: cmd.length }], [{ addr: p.va(ack), len: 1 }]);
      p.rings[4]!.driver.publish();
      p.rings[4]!.kick.signal();
      await p.rings[4]!.call.wait();
      assert.equal(p.rings[4]!.driver.collectUsed().length, 1);
      return (await read(p, ack, 1))[0]!;
    };
    assert.equal(await ctrl([4, 0, 2, 0]), 0, "VIRTIO_NET_CTRL_MQ VQ_PAIRS_SET 2: OK");
    assert.equal(await ctrl([4, 0, 3, 0]), 1, "3 pairs: ERR");
    assert.equal(await ctrl([0, 0, 1]), 0, "promiscuous on: OK");
    const ctrlBroken = dev.next("event queue-broken 4 ");
    const at = await p.buffer(16);
    p.rings[4]!.driver.add([{ addr: p.va(at), len: 1 }], [{ addr: p.va(at + 8n), len: 1 }]);
    p.rings[4]!.driver.publish();
    p.rings[4]!.kick.signal();
    assert.match(await ctrlBroken, /NET_CTRL_MALFORMED/);
  });

  test("without MRG_RXBUF a receive buffer too small for the frame breaks that receiveq only", { timeout: 20000 }, async () => {
    await dev.line("event disconnected");
    using p = new Port();
    using fe = await ScriptedFrontend.connect(dev.socket);
    await setUpLikeDpdk(fe, p, VirtioFeature.VERSION_1 | VirtioFeature.PROTOCOL_FEATURES | MAC | MQ);
    await postRx(p, 0, 1, 64);
    const broken = dev.next("event queue-broken 0 ");
    await transmit(p, 1, frame(100));
    assert.match(await broken, /NET_RX_BUFFER_TOO_SMALL.*112-byte frame/);
    const [rx] = await postRx(p, 2, 1, 1536);
    const f = frame(100);
    await transmit(p, 3, f);
    await p.rings[2]!.call.wait();
    assert.deepEqual(
      p.rings[2]!.driver.collectUsed().map((u) => [u.token, u.len]),
      [[rx, 112]],
    );
    const got = await read(p, rx!, 112);
    assert.equal(got[10], 1, "num_buffers is 1 without MRG_RXBUF");
    assert.deepEqual(got.subarray(12), swapped(f));

    // A transmit chain longer than any frame (no GSO offered) breaks that transmitq.
    const tooLong = dev.next("event queue-broken 3 ");
    const at = await p.buffer(70_000);
    p.rings[3]!.driver.add([{ addr: p.va(at), len: 70_000 }], []);
    p.rings[3]!.driver.publish();
    p.rings[3]!.kick.signal();
    assert.match(await tooLong, /NET_CHAIN_TOO_LONG/);
  });

  test("after the front-ends left, the device process holds no more fds than before them", { timeout: 20000 }, async () => {
    // Both connections reported their end (the count is checked and the wait registered in one tick).
    while (dev.lines.filter((l) => l.startsWith("event disconnected")).length < 2) await dev.next("event disconnected");
    assert.equal(dev.fdCount(), baselineFds);
    assert.equal(dev.child.exitCode, null, "still serving");
  });
});
