/**
 * Inflight I/O tracking on packed rings in the back-end (docs/protocol.md#inflight-tracking-and-reconnect):
 * with VIRTIO_F_RING_PACKED acknowledged, GET_INFLIGHT_FD allocates a sealed memfd area in the
 * packed-ring layout (any queue size), a restarted back-end (a second dispatcher given the same
 * area with SET_INFLIGHT_FD) serves the lists its predecessor left in flight before any new one —
 * from the area, since used descriptors overwrote their ring slots — and a hostile area breaks only
 * the ring, with `BAD_INFLIGHT`, the connection staying up.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { GuestRam, guestAddress } from "@vhostkit/regions";
import { Endpoint, EventFd, OwnedFd, socketPair } from "@vhostkit/transport";
import { fstatSize, getSeals, mmapOrErrno, munmap, MAP, nativeView, pointerAt, PROT, SEAL } from "@vhostkit/transport/sys";
import { ChainBatch, FRESH_PACKED_VRING_BASE, readChain, packedInflightQueueBytes } from "@vhostkit/virtqueue";
import { PackedDriver } from "@vhostkit/virtqueue/driver";
import { ProtocolFeature, VirtioFeature, type InflightInfo } from "@vhostkit/wire";
import { serveFd, type BackendEvent, type DeviceBackend } from "../src/index.js";
import { ScriptedFrontend } from "./helpers/scripted-frontend.js";

const MiB = 1n << 20n;
const SIZE = 12; // packed rings need no power of two
const RINGS = { desc: 0x1000n, avail: 0x1200n, used: 0x1204n };
const PF = ProtocolFeature.REPLY_ACK | ProtocolFeature.CONFIGURE_MEM_SLOTS | ProtocolFeature.INFLIGHT_SHMFD;
const FEATURES = VirtioFeature.VERSION_1 | VirtioFeature.PROTOCOL_FEATURES | VirtioFeature.RING_PACKED;

/** A device that completes the lists `complete` chooses and drops the others (as a process that dies holding them). */
function device(complete: (token: number) => boolean, seen: number[]): DeviceBackend {
  const batch = new ChainBatch(64);
  return {
    features: 0n,
    queueCount: 2,
    maxQueueSize: 256,
    async processQueue({ queue, memory }) {
      for (let n; (n = queue.pop(batch)) > 0; ) {
        for (let c = 0; c < n; c++) {
          const token = new Uint8Array(4);
          await readChain(queue.segments(batch, c), memory, token);
          const t = new DataView(token.buffer).getUint32(0, true);
          seen.push(t);
          if (complete(t)) queue.addUsed(batch.heads[c]!, 0);
        }
      }
    },
  };
}

/** A device served on one end of a socketpair, a scripted front-end on the other. */
function served(d: DeviceBackend, events: BackendEvent[] = []) {
  const [mine, theirs] = socketPair();
  return { fe: new ScriptedFrontend(new Endpoint(mine)), done: serveFd(theirs, d, { onEvent: (e) => events.push(e) }) };
}

/** Negotiation (packed rings) and guest RAM, then the inflight area: GET (first start) when `area` is undefined, then SET. */
async function setUp(fe: ScriptedFrontend, ram: GuestRam, area?: { fd: number; info: InflightInfo }): Promise<{ fd: number; info: InflightInfo }> {
  assert.equal(await fe.ack("SET_PROTOCOL_FEATURES", PF), 0n);
  assert.equal(await fe.ack("SET_FEATURES", FEATURES), 0n);
  const b = ram.memoryTable()[0]!;
  assert.equal(await fe.ack("ADD_MEM_REG", { guestPhysAddr: 0n, memorySize: MiB, userAddr: b.userspaceAddr, mmapOffset: 0n }, [b.fd]), 0n);
  if (area === undefined) {
    await fe.send("GET_INFLIGHT_FD", { mmapSize: 0n, mmapOffset: 0n, numQueues: 1, queueSize: SIZE });
    const { value, msg } = await fe.reply("GET_INFLIGHT_FD");
    assert.equal(msg.fds.length, 1);
    area = { fd: msg.fds[0]!.transfer(), info: value as InflightInfo };
  }
  assert.equal(await fe.ack("SET_INFLIGHT_FD", area.info, [area.fd]), 0n);
  return area;
}

/** Vring 0 on the driver's areas at packed base `base`: NUM, BASE, ADDR, CALL, KICK, ENABLE. */
async function startRing(fe: ScriptedFrontend, ram: GuestRam, base: number): Promise<{ call: EventFd; kick: EventFd }> {
  const u = (a: bigint) => ram.userAddressOf(guestAddress(a));
  assert.equal(await fe.ack("SET_VRING_NUM", { index: 0, num: SIZE }), 0n);
  assert.equal(await fe.ack("SET_VRING_BASE", { index: 0, num: base }), 0n);
  assert.equal(
    await fe.ack("SET_VRING_ADDR", { index: 0, flags: 0, descAddr: u(RINGS.desc), usedAddr: u(RINGS.used), availAddr: u(RINGS.avail), logAddr: 0n }),
    0n,
  );
  const call = EventFd.create();
  const kick = EventFd.create();
  assert.equal(await fe.ack("SET_VRING_CALL", { index: 0, noFd: false }, [call.fd]), 0n);
  assert.equal(await fe.ack("SET_VRING_KICK", { index: 0, noFd: false }, [kick.fd]), 0n);
  assert.equal(await fe.ack("SET_VRING_ENABLE", { index: 0, num: 1 }), 0n);
  return { call, kick };
}

/** Submits one list per token of `parts` readable buffers, the first holding the token. */
async function submit(driver: PackedDriver<number>, ram: GuestRam, tokens: readonly number[], parts = 2): Promise<void> {
  for (const t of tokens) {
    const addr = guestAddress(0x10000n + BigInt(t) * 64n);
    await ram.write(addr, new Uint8Array(new Uint32Array([t]).buffer));
    const bufs = Array.from({ length: parts }, (_, j) => ({ addr: guestAddress(addr + BigInt(16 * j)), len: 4 }));
    driver.add(bufs, [], t);
  }
  driver.publish();
}

/** Collects completions until `n` arrived. */
async function collect(driver: PackedDriver<number>, call: EventFd, n: number): Promise<number[]> {
  const got: number[] = [];
  while (got.length < n) {
    got.push(...driver.collectUsed().map((u) => u.token!));
    if (got.length < n) await call.wait();
  }
  return got;
}

/** The used position twice: what a front-end sends a restarted back-end of a packed ring. */
function restartBase(driver: PackedDriver<number>): number {
  const u = driver.lastUsedIndex;
  return (u | (u << 16)) >>> 0;
}

test("GET_INFLIGHT_FD with packed rings: a sealed memfd area in the packed layout, any queue size", async () => {
  const { fe, done } = served(device(() => true, []));
  const ram = new GuestRam({ blocks: [{ guestPhysAddr: 0n, size: MiB }] });
  try {
    const { fd, info } = await setUp(fe, ram);
    assert.deepEqual(info, { mmapSize: BigInt(packedInflightQueueBytes(SIZE)), mmapOffset: 0n, numQueues: 1, queueSize: SIZE });
    assert.equal(fstatSize(fd)?.size, info.mmapSize);
    assert.equal(getSeals(fd) & (SEAL.SHRINK | SEAL.GROW | SEAL.SEAL), SEAL.SHRINK | SEAL.GROW | SEAL.SEAL);
    new OwnedFd(fd).close();
  } finally {
    fe.close();
    await done;
    ram.dispose();
  }
});

test("a restarted back-end serves the packed lists left in flight first, from the area, in the order taken; every list completes once", async () => {
  const ram = new GuestRam({ blocks: [{ guestPhysAddr: 0n, size: MiB }] });
  const driver = new PackedDriver<number>({ size: SIZE, memory: ram, addresses: RINGS, reset: true });
  const firstSeen: number[] = [];
  const first = served(device((t) => t === 2, firstSeen));
  const events: BackendEvent[] = [];
  let area: { fd: number; info: InflightInfo } | undefined;
  try {
    area = await setUp(first.fe, ram);
    const a = await startRing(first.fe, ram, FRESH_PACKED_VRING_BASE);
    await submit(driver, ram, [1, 2, 3]);
    a.kick.signal();
    // List 2's used descriptor lands in list 1's first ring slot.
    assert.deepEqual(await collect(driver, a.call, 1), [2]);
    assert.deepEqual(firstSeen, [1, 2, 3]);
    first.fe.close();
    await first.done;
    a.call.close();
    a.kick.close();
    await submit(driver, ram, [4]);
    const secondSeen: number[] = [];
    const second = served(
      device(() => true, secondSeen),
      events,
    );
    try {
      await setUp(second.fe, ram, area);
      const b = await startRing(second.fe, ram, restartBase(driver));
      b.kick.signal();
      assert.deepEqual((await collect(driver, b.call, 3)).sort(), [1, 3, 4]);
      assert.deepEqual(secondSeen, [1, 3, 4], "resubmitted in counter order, then the new list");
      assert.deepEqual(
        events.find((e) => e.kind === "inflight"),
        { kind: "inflight", index: 0, resubmitted: 2 },
      );
      const want = (driver.availIndex | (driver.lastUsedIndex << 16)) >>> 0;
      assert.deepEqual(await second.fe.get("GET_VRING_BASE", { index: 0, num: 0 }), { index: 0, num: want });
      b.call.close();
      b.kick.close();
    } finally {
      second.fe.close();
      await second.done;
    }
  } finally {
    first.fe.close();
    if (area !== undefined) new OwnedFd(area.fd).close();
    ram.dispose();
  }
});

test("a hostile packed area breaks only the ring (BAD_INFLIGHT); the connection stays up", async () => {
  const ram = new GuestRam({ blocks: [{ guestPhysAddr: 0n, size: MiB }] });
  const driver = new PackedDriver<number>({ size: SIZE, memory: ram, addresses: RINGS, reset: true });
  const first = served(device(() => false, []));
  let area: { fd: number; info: InflightInfo } | undefined;
  try {
    area = await setUp(first.fe, ram);
    const a = await startRing(first.fe, ram, FRESH_PACKED_VRING_BASE);
    await submit(driver, ram, [1, 2]);
    a.kick.signal();
    // Wait until both lists are recorded, through a mapping of our own of the memfd.
    const len = Number(area.info.mmapSize);
    const m = mmapOrErrno(0n, len, PROT.READ | PROT.WRITE, MAP.SHARED, area.fd, 0n);
    assert.ok(m.ok);
    const bytes = new Uint8Array(nativeView(pointerAt(m.addr), len));
    const dv = new DataView(bytes.buffer, bytes.byteOffset, len);
    while (bytes[32] !== 1 || bytes[32 + 64] !== 1) await new Promise((r) => setTimeout(r, 5));
    first.fe.close();
    await first.done;
    a.call.close();
    a.kick.close();
    dv.setUint16(32 + 6, SIZE + 1, true); // the first list claims more descriptors than the ring has
    munmap(m.addr, len);
    const events: BackendEvent[] = [];
    const second = served(
      device(() => true, []),
      events,
    );
    try {
      await setUp(second.fe, ram, area);
      const b = await startRing(second.fe, ram, restartBase(driver));
      const broken = events.find((e): e is Extract<BackendEvent, { kind: "queue-broken" }> => e.kind === "queue-broken");
      assert.equal((broken?.error as { code?: string } | undefined)?.code, "BAD_INFLIGHT");
      assert.equal(await second.fe.ack("SET_VRING_ENABLE", { index: 0, num: 0 }), 0n, "the connection still answers");
      assert.ok(!events.some((e) => e.kind === "dropped"));
      b.call.close();
      b.kick.close();
    } finally {
      second.fe.close();
      await second.done;
    }
  } finally {
    first.fe.close();
    if (area !== undefined) new OwnedFd(area.fd).close();
    ram.dispose();
  }
});

test("queue sizes: a packed area takes any size in 1..32768, a split one only powers of two", async () => {
  for (const [features, size, ok] of [
    [FEATURES, 24, true],
    [FEATURES & ~VirtioFeature.RING_PACKED, 24, false],
    [FEATURES, 0, false],
  ] as const) {
    const { fe, done } = served(device(() => true, []));
    try {
      assert.equal(await fe.ack("SET_PROTOCOL_FEATURES", PF), 0n);
      assert.equal(await fe.ack("SET_FEATURES", features), 0n);
      await fe.send("GET_INFLIGHT_FD", { mmapSize: 0n, mmapOffset: 0n, numQueues: 1, queueSize: size });
      const r = await fe.reply("GET_INFLIGHT_FD");
      assert.equal((r.value as InflightInfo).mmapSize, ok ? BigInt(packedInflightQueueBytes(size)) : 0n, `${size} ${features}`);
      for (const f of r.msg.fds) f.close();
    } finally {
      fe.close();
      await done;
    }
  }
});
