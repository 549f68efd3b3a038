/**
 * Inflight I/O tracking in the back-end (docs/protocol.md#inflight-tracking-and-reconnect):
 * GET_INFLIGHT_FD allocates a sealed area in the split-ring layout, SET_INFLIGHT_FD maps the area a
 * front-end hands back, and a device served by a second dispatcher (the restarted back-end) gets
 * the chains its predecessor left in flight before any new one, with no change to the device.
 * Hostile descriptions are refused with typed errors, the connection staying up.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { openSync, closeSync } from "node:fs";
import { GuestRam, guestAddress } from "@vhostkit/regions";
import { Endpoint, EventFd, OwnedFd, socketPair } from "@vhostkit/transport";
import { fstatSize, getSeals, memfdCreate, ftruncate, MFD, SEAL, sealedMemfd } from "@vhostkit/transport/sys";
import { ChainBatch, readChain, splitInflightQueueBytes } from "@vhostkit/virtqueue";
import { SplitDriver } from "@vhostkit/virtqueue/driver";
import { ProtocolFeature, VirtioFeature, type InflightInfo } from "@vhostkit/wire";
import { serveFd, type BackendEvent, type DeviceBackend } from "../src/index.js";
import { ScriptedFrontend } from "./helpers/scripted-frontend.js";

const MiB = 1n << 20n;
const RINGS = { desc: 0x1000n, avail: 0x1200n, used: 0x1400n };
const PF = ProtocolFeature.REPLY_ACK | ProtocolFeature.CONFIGURE_MEM_SLOTS | ProtocolFeature.INFLIGHT_SHMFD;

/** A device that completes the chains `complete` chooses and drops the others (as a process that dies holding them). */
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

/** Negotiation and guest RAM, then the inflight area: GET (first start) when `area` is undefined, then SET. */
async function setUp(fe: ScriptedFrontend, ram: GuestRam, area?: { fd: number; info: InflightInfo }): Promise<{ fd: number; info: InflightInfo }> {
  assert.equal(await fe.ack("SET_PROTOCOL_FEATURES", PF), 0n);
  assert.equal(await fe.ack("SET_FEATURES", VirtioFeature.VERSION_1 | VirtioFeature.PROTOCOL_FEATURES), 0n);
  const b = ram.memoryTable()[0]!;
  assert.equal(await fe.ack("ADD_MEM_REG", { guestPhysAddr: 0n, memorySize: MiB, userAddr: b.userspaceAddr, mmapOffset: 0n }, [b.fd]), 0n);
  if (area === undefined) {
    await fe.send("GET_INFLIGHT_FD", { mmapSize: 0n, mmapOffset: 0n, numQueues: 1, queueSize: 16 });
    const { value, msg } = await fe.reply("GET_INFLIGHT_FD");
    assert.equal(msg.fds.length, 1);
    area = { fd: msg.fds[0]!.transfer(), info: value as InflightInfo };
  }
  assert.equal(await fe.ack("SET_INFLIGHT_FD", area.info, [area.fd]), 0n);
  return area;
}

/** Vring 0 on `driver`'s rings at `base`: NUM, BASE, ADDR, CALL, KICK, ENABLE. */
async function startRing(fe: ScriptedFrontend, ram: GuestRam, base: number, size = 16): Promise<{ call: EventFd; kick: EventFd }> {
  const u = (a: bigint) => ram.userAddressOf(guestAddress(a));
  assert.equal(await fe.ack("SET_VRING_NUM", { index: 0, num: size }), 0n);
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

/** Submits chains whose one readable buffer holds the token. */
async function submit(driver: SplitDriver<number>, ram: GuestRam, tokens: readonly number[]): Promise<void> {
  for (const t of tokens) {
    const addr = guestAddress(0x10000n + BigInt(t) * 16n);
    await ram.write(addr, new Uint8Array(new Uint32Array([t]).buffer));
    driver.add([{ addr, len: 4 }], [], t);
  }
  driver.publish();
}

/** Collects completions until `n` arrived. */
async function collect(driver: SplitDriver<number>, call: EventFd, n: number): Promise<number[]> {
  const got: number[] = [];
  while (got.length < n) {
    got.push(...driver.collectUsed().map((u) => u.token!));
    if (got.length < n) await call.wait();
  }
  return got;
}

test("GET_INFLIGHT_FD: a zeroed area in the split layout, in a memfd sealed against shrink, grow and sealing", async () => {
  const { fe, done } = served(device(() => true, []));
  const ram = new GuestRam({ blocks: [{ guestPhysAddr: 0n, size: MiB }] });
  try {
    const { fd, info } = await setUp(fe, ram);
    assert.deepEqual(info, { mmapSize: BigInt(splitInflightQueueBytes(16)), mmapOffset: 0n, numQueues: 1, queueSize: 16 });
    assert.equal(fstatSize(fd)?.size, info.mmapSize);
    assert.equal(getSeals(fd) & (SEAL.SHRINK | SEAL.GROW | SEAL.SEAL), SEAL.SHRINK | SEAL.GROW | SEAL.SEAL);
    new OwnedFd(fd).close();
  } finally {
    fe.close();
    await done;
    ram.dispose();
  }
});

test("a restarted back-end serves the chains left in flight first, in the order they were taken; every chain completes once", async () => {
  const ram = new GuestRam({ blocks: [{ guestPhysAddr: 0n, size: MiB }] });
  const driver = new SplitDriver<number>({ size: 16, memory: ram, addresses: RINGS, reset: true });
  const firstSeen: number[] = [];
  const first = served(device((t) => t === 2, firstSeen));
  let area: { fd: number; info: InflightInfo } | undefined;
  try {
    area = await setUp(first.fe, ram);
    const a = await startRing(first.fe, ram, 0);
    await submit(driver, ram, [1, 2, 3]);
    a.kick.signal();
    assert.deepEqual(await collect(driver, a.call, 1), [2]);
    assert.deepEqual(firstSeen, [1, 2, 3]);
    // The back-end goes away holding 1 and 3; the driver queues 4 meanwhile.
    first.fe.close();
    await first.done;
    a.call.close();
    a.kick.close();
    await submit(driver, ram, [4]);
    const secondSeen: number[] = [];
    const second = served(device(() => true, secondSeen));
    try {
      await setUp(second.fe, ram, area);
      const b = await startRing(second.fe, ram, driver.lastUsedIndex);
      b.kick.signal();
      assert.deepEqual((await collect(driver, b.call, 3)).sort(), [1, 3, 4]);
      assert.deepEqual(secondSeen, [1, 3, 4], "resubmitted in counter order, then the new chain");
      assert.deepEqual(await second.fe.get("GET_VRING_BASE", { index: 0, num: 0 }), { index: 0, num: 4 });
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

test("hostile inflight descriptions are refused with typed errors and the connection stays", async () => {
  const events: BackendEvent[] = [];
  const { fe, done } = served(
    device(() => true, []),
    events,
  );
  const ram = new GuestRam({ blocks: [{ guestPhysAddr: 0n, size: MiB }] });
  const fds: number[] = [];
  try {
    // Before INFLIGHT_SHMFD is negotiated: the "no area" answer (mmap_size 0, no fd).
    await fe.send("GET_INFLIGHT_FD", { mmapSize: 0n, mmapOffset: 0n, numQueues: 1, queueSize: 16 });
    let r = await fe.reply("GET_INFLIGHT_FD");
    assert.equal((r.value as InflightInfo).mmapSize, 0n);
    assert.equal(r.msg.fds.length, 0);
    const good = await setUp(fe, ram);
    fds.push(good.fd);
    for (const bad of [
      { numQueues: 0, queueSize: 16 },
      { numQueues: 3, queueSize: 16 },
      { numQueues: 1, queueSize: 24 },
      { numQueues: 1, queueSize: 65536 & 0xffff },
    ]) {
      await fe.send("GET_INFLIGHT_FD", { mmapSize: 0n, mmapOffset: 0n, ...bad });
      r = await fe.reply("GET_INFLIGHT_FD");
      assert.equal((r.value as InflightInfo).mmapSize, 0n, JSON.stringify(bad));
      assert.equal(r.msg.fds.length, 0);
    }
    const per = BigInt(splitInflightQueueBytes(16));
    const unsealed = memfdCreate("unsealed", MFD.CLOEXEC);
    ftruncate(unsealed, 4n * 4096n);
    const short = sealedMemfd("short", 4096n);
    const devNull = openSync("/dev/null", "r");
    fds.push(unsealed, short);
    const cases: [string, InflightInfo, number][] = [
      ["mmap_size below what the queues need", { mmapSize: per - 1n, mmapOffset: 0n, numQueues: 1, queueSize: 16 }, good.fd],
      ["mmap_offset not page-aligned", { mmapSize: per, mmapOffset: 8n, numQueues: 1, queueSize: 16 }, good.fd],
      ["area past the end of the file", { mmapSize: per, mmapOffset: 4096n, numQueues: 1, queueSize: 16 }, short],
      ["a file not sealed against shrinking", { mmapSize: per, mmapOffset: 0n, numQueues: 1, queueSize: 16 }, unsealed],
      ["not a regular file", { mmapSize: per, mmapOffset: 0n, numQueues: 1, queueSize: 16 }, devNull],
      ["more queues than the device", { mmapSize: 4n * per, mmapOffset: 0n, numQueues: 4, queueSize: 16 }, good.fd],
    ];
    for (const [what, info, fd] of cases) assert.equal(await fe.ack("SET_INFLIGHT_FD", info, [fd]), 1n, what);
    closeSync(devNull);
    // A ring larger than the area's queues cannot be tracked: its start is refused.
    assert.equal(await fe.ack("SET_VRING_NUM", { index: 0, num: 32 }), 0n);
    const u = (a: bigint) => ram.userAddressOf(guestAddress(a));
    assert.equal(
      await fe.ack("SET_VRING_ADDR", { index: 0, flags: 0, descAddr: u(RINGS.desc), usedAddr: u(0x2000n), availAddr: u(RINGS.avail), logAddr: 0n }),
      0n,
    );
    const kick = EventFd.create();
    assert.equal(await fe.ack("SET_VRING_KICK", { index: 0, noFd: false }, [kick.fd]), 1n);
    kick.close();
    // A started ring records into the current area: no new one meanwhile.
    const ring = await startRing(fe, ram, 0);
    assert.equal(await fe.ack("SET_INFLIGHT_FD", good.info, [good.fd]), 1n);
    ring.call.close();
    ring.kick.close();
    const rejected = events.filter((e): e is Extract<BackendEvent, { kind: "rejected" }> => e.kind === "rejected");
    assert.ok(rejected.length >= 12, String(rejected.length));
    assert.ok(
      rejected.every((e) => typeof e.error.code === "string" && /^[A-Z_]+$/.test(e.error.code)),
      rejected.map((e) => e.error.code).join(),
    );
    assert.ok(!events.some((e) => e.kind === "dropped"));
  } finally {
    fe.close();
    await done;
    for (const f of fds) new OwnedFd(f).close();
    ram.dispose();
  }
});
