/**
 * `serveFd`: a device served on an already-connected socket (as with qemu-storage-daemon's
 * `addr.type=fd`), a device definition the framework refuses, and device hooks that throw.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { GuestRam } from "@vhostkit/regions";
import { Endpoint, EventFd, socketPair } from "@vhostkit/transport";
import { MEM_RW_MAX_PAYLOAD, ProtocolFeature, VHOSTKIT_MEM_RW, VirtioFeature } from "@vhostkit/wire";
import { mkdtempSync, readdirSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BackendError, Dispatcher, FRAMEWORK_FEATURES, serve, serveFd, type DeviceBackend, type DeviceContext } from "../src/index.js";
import { backendChannel, ScriptedFrontend, startRing } from "./helpers/scripted-frontend.js";

const device: DeviceBackend = { features: 1n << 5n, queueCount: 2, maxQueueSize: 128, processQueue() {} };

/** `device` served on one end of a socketpair (serveFd), a scripted front-end on the other. */
function servedOnPair(...args: Parameters<typeof serveFd> extends [unknown, ...infer R] ? R : never): { fe: ScriptedFrontend; served: Promise<void> } {
  const [mine, theirs] = socketPair();
  return { served: serveFd(theirs, ...args), fe: new ScriptedFrontend(new Endpoint(mine)) };
}

/**
 * `fe` negotiates `protocolFeatures` (then runs `beforeFeatures`, e.g. to set up the back-end
 * channel) and VERSION_1 | PROTOCOL_FEATURES, adds 1 MiB of guest RAM at 0, and starts vring 0.
 */
async function runningRing(fe: ScriptedFrontend, protocolFeatures: bigint, beforeFeatures?: () => Promise<void>): Promise<{ ram: GuestRam } & Awaited<ReturnType<typeof startRing>>> {
  assert.equal(await fe.ack("SET_PROTOCOL_FEATURES", protocolFeatures), 0n);
  await beforeFeatures?.();
  assert.equal(await fe.ack("SET_FEATURES", VirtioFeature.VERSION_1 | VirtioFeature.PROTOCOL_FEATURES), 0n);
  const ram = new GuestRam({ blocks: [{ guestPhysAddr: 0n, size: 1n << 20n }] });
  const b = ram.memoryTable()[0]!;
  assert.equal(await fe.ack("ADD_MEM_REG", { guestPhysAddr: 0n, memorySize: 1n << 20n, userAddr: b.userspaceAddr, mmapOffset: 0n }, [b.fd]), 0n);
  return { ram, ...(await startRing(fe, ram)) };
}

test("serveFd answers a front-end on a connected socket and resolves when it leaves", async () => {
  const { fe, served } = servedOnPair(device);
  assert.equal(await fe.get("GET_FEATURES"), (1n << 5n) | FRAMEWORK_FEATURES);
  assert.notEqual(((await fe.get("GET_FEATURES")) as bigint) & VirtioFeature.VERSION_1, 0n);
  await fe.send("SET_PROTOCOL_FEATURES", 0n);
  assert.equal(await fe.get("GET_QUEUE_NUM"), 2n);
  fe.close();
  await served;
});

test("an invalid device definition is a BAD_DEVICE error, the socket is not used", () => {
  const [a, b] = socketPair();
  const ep = new Endpoint(a);
  // ACCESS_PLATFORM: addresses would be IOVAs, and there is no IOTLB support.
  for (const bad of [{ ...device, queueCount: 0 }, { ...device, maxQueueSize: 100 }, { ...device, shmemRegions: () => [{ shmid: 1, size: 4097n }] }, { ...device, features: VirtioFeature.ACCESS_PLATFORM }]) {
    assert.throws(() => new Dispatcher(ep, bad), (e: unknown) => e instanceof BackendError && e.code === "BAD_DEVICE");
  }
  ep.close();
  b.close();
});

test("a front-end that keeps requests queued does not starve the event loop", async () => {
  const [mine, theirs] = socketPair();
  let served = 0;
  const fe = new ScriptedFrontend(new Endpoint(mine));
  const total = 100; // well within the socket buffers of both directions (each message costs one skb)
  // Every request is in the socket before the dispatcher starts: its recv never has to wait.
  for (let i = 0; i < total; i++) await fe.send("GET_QUEUE_NUM", undefined);
  const done = serveFd(theirs, device, { onEvent: (e) => void (e.kind === "request" && served++) });
  const servedWhenTimerRan = await new Promise<number>((resolve) => setImmediate(() => resolve(served)));
  assert.ok(servedWhenTimerRan < total, `a macrotask ran after ${servedWhenTimerRan} of ${total} queued requests`);
  for (let i = 0; i < total; i++) assert.equal((await fe.reply("GET_QUEUE_NUM")).value, 2n);
  assert.equal(served, total);
  fe.close();
  await done;
});

test("device hooks that throw are reported, not fatal: the server serves the next front-end", async () => {
  const dir = mkdtempSync(join(tmpdir(), "vhostkit-throwing-"));
  const events: string[] = [];
  const throwing: DeviceBackend = {
    ...device,
    reset() {
      throw new Error("reset failed");
    },
  };
  assert.throws(() => serve(join(dir, "bad.sock"), { ...device, queueCount: 0 }), (e: unknown) => e instanceof BackendError && e.code === "BAD_DEVICE", "an invalid device is refused before listening");
  const server = serve(join(dir, "blk.sock"), throwing, {
    connections: 2,
    onEvent: (e) => {
      events.push(e.kind === "device-error" ? `device-error ${(e.error as Error).message}` : e.kind);
      if (e.kind === "disconnected") throw new Error("a throwing listener");
    },
  });
  try {
    for (let i = 0; i < 2; i++) {
      const fe = await ScriptedFrontend.connect(server.path);
      assert.equal(await fe.get("GET_QUEUE_NUM"), 2n, `front-end ${i + 1} served`);
      const gone = new Promise<void>((r) => {
        const poll = (): void => void (events.filter((e) => e === "disconnected").length > i ? r() : setTimeout(poll, 5));
        poll();
      });
      fe.close();
      await gone;
    }
    await server.done;
    assert.deepEqual(events.filter((e) => e.startsWith("device-error")), ["device-error reset failed", "device-error reset failed"]);
  } finally {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("SET_CONFIG reaches a device with a writable config: acked 0, the bytes arrive; a refusal is acked 1", async () => {
  const [mine, theirs] = socketPair();
  const writes: [number, number[]][] = [];
  const config = new Uint8Array(16);
  const served = serveFd(theirs, {
    ...device,
    getConfig: (offset, size) => config.slice(offset, offset + size),
    setConfig(offset, data) {
      if (offset + data.length > 8) throw new RangeError("only the first 8 bytes are writable");
      writes.push([offset, [...data]]);
      config.set(data, offset);
    },
  });
  const fe = new ScriptedFrontend(new Endpoint(mine));
  assert.equal(await fe.ack("SET_PROTOCOL_FEATURES", ProtocolFeature.REPLY_ACK | ProtocolFeature.CONFIG), 0n);
  assert.equal(await fe.ack("SET_CONFIG", { offset: 4, flags: 0, data: Uint8Array.of(1, 2, 3, 4) }), 0n);
  assert.deepEqual(writes, [[4, [1, 2, 3, 4]]]);
  const back = (await fe.get("GET_CONFIG", { offset: 0, flags: 0, data: new Uint8Array(8) })) as { data: Uint8Array };
  assert.deepEqual([...back.data], [0, 0, 0, 0, 1, 2, 3, 4]);
  assert.equal(await fe.ack("SET_CONFIG", { offset: 8, flags: 0, data: Uint8Array.of(9) }), 1n, "the device refused it");
  assert.equal(writes.length, 1);
  fe.close();
  await served;
});

test("REPLY_ACK exactly per spec: NEED_REPLY is acked only once REPLY_ACK was negotiated", async () => {
  const { fe, served } = servedOnPair(device);
  await fe.send("SET_OWNER", undefined, { needReply: true }); // REPLY_ACK not negotiated: no ack
  // The next message from the back-end is the GET_QUEUE_NUM reply, not an ack of SET_OWNER.
  assert.equal(await fe.get("GET_QUEUE_NUM"), 2n);
  await fe.send("SET_PROTOCOL_FEATURES", ProtocolFeature.REPLY_ACK);
  assert.equal(await fe.ack("SET_OWNER"), 0n, "acked once negotiated");
  assert.equal(await fe.ack("SET_VRING_NUM", { index: 9, num: 8 }), 1n, "and a failure is acked 1");
  fe.close();
  await served;
});

test("GET_SHMEM_CONFIG answers what the device declared at the start, however often it is asked (docs/shmem.md#region-query)", async () => {
  let calls = 0;
  const changing: DeviceBackend = { ...device, shmemRegions: () => (++calls === 1 ? [{ shmid: 1, size: 1n << 20n }] : [{ shmid: 2, size: 1n << 16n }]) };
  const { fe, served } = servedOnPair(changing);
  assert.equal(await fe.ack("SET_PROTOCOL_FEATURES", ProtocolFeature.REPLY_ACK | ProtocolFeature.SHMEM), 0n);
  for (let i = 0; i < 2; i++) {
    const c = (await fe.get("GET_SHMEM_CONFIG")) as { nregions: number; sizes: bigint[] };
    assert.equal(c.nregions, 1);
    assert.equal(c.sizes[1], 1n << 20n, `answer ${i + 1}: the declared region`);
    assert.equal(c.sizes[2], 0n);
  }
  assert.equal(calls, 1, "asked once, when the connection was set up");
  fe.close();
  await served;
});

test("without MEM_RW the back-end channel keeps the usual payload cap (docs/shmem.md#extension-rules, rule 6)", async () => {
  for (const memRw of [false, true]) {
    let started!: (ctx: DeviceContext) => void;
    const context = new Promise<DeviceContext>((r) => (started = r));
    const { fe, served } = servedOnPair({ ...device, getConfig: (_offset, size) => new Uint8Array(size), start: (ctx) => started(ctx) }, { memRw });
    const pf = ProtocolFeature.REPLY_ACK | ProtocolFeature.BACKEND_REQ | ProtocolFeature.CONFIG | ProtocolFeature.CONFIGURE_MEM_SLOTS | (memRw ? VHOSTKIT_MEM_RW : 0n);
    let channel!: Awaited<ReturnType<typeof backendChannel>>;
    const { ram, call, kick } = await runningRing(fe, pf, async () => void (channel = await backendChannel(fe, { maxPayload: MEM_RW_MAX_PAYLOAD })));
    const ctx = await context;
    // A CONFIG_CHANGE_MSG answered with a 5000-byte "ack": past the 4 KiB cap.
    const changed = ctx.client.configChanged();
    const m = await channel.recv();
    await channel.send(m.request, 0x5, new Uint8Array(5000));
    const err = await changed.then(() => undefined, (e: unknown) => e);
    const codes: string[] = [];
    for (let e = err as { code?: string; cause?: unknown } | undefined; e !== undefined; e = e.cause as typeof e) codes.push(String(e.code));
    if (memRw) assert.ok(!codes.includes("OVERSIZE"), `with MEM_RW the reply is read (and refused as a bad ack): ${codes.join(" <- ")}`);
    else assert.ok(codes.includes("OVERSIZE"), `the header's size is refused before any byte of it is read: ${codes.join(" <- ")}`);
    fe.close();
    await served;
    for (const x of [channel, call, kick]) x.close();
    ram.dispose();
  }
});

test("REM_MEM_REG that comes with an fd is served and the fd closed unused (docs/protocol.md#file-descriptors)", async () => {
  const before = readdirSync("/proc/self/fd").length;
  const { fe, served } = servedOnPair(device);
  assert.equal(await fe.ack("SET_PROTOCOL_FEATURES", ProtocolFeature.REPLY_ACK | ProtocolFeature.CONFIGURE_MEM_SLOTS), 0n);
  const ram = new GuestRam({ blocks: [{ guestPhysAddr: 0n, size: 1n << 20n }] });
  const b = ram.memoryTable()[0]!;
  const region = { guestPhysAddr: 0n, memorySize: 1n << 20n, userAddr: b.userspaceAddr, mmapOffset: 0n };
  assert.equal(await fe.ack("ADD_MEM_REG", region, [b.fd]), 0n);
  assert.equal(await fe.ack("REM_MEM_REG", region, [b.fd]), 0n, "removed, its fd ignored");
  assert.equal(await fe.ack("REM_MEM_REG", region, [b.fd]), 1n, "nothing left to remove");
  assert.equal(await fe.ack("REM_MEM_REG", region, [b.fd, b.fd]), 1n, "two fds: refused");
  fe.close();
  await served;
  ram.dispose();
  assert.equal(readdirSync("/proc/self/fd").length, before, "every fd that came with a REM_MEM_REG was closed");
});

test("after a disconnect the device is reset, and the next front-end served, only once its running handler returned", async () => {
  const dir = mkdtempSync(join(tmpdir(), "vhostkit-handler-"));
  const log: string[] = [];
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  let entered!: () => void;
  const inHandler = new Promise<void>((r) => (entered = r));
  const slow: DeviceBackend = {
    ...device,
    async processQueue() {
      log.push("handler start");
      entered();
      await held;
      log.push("handler end");
    },
    reset: () => void log.push("reset"),
  };
  const server = serve(join(dir, "slow.sock"), slow, { connections: 2, onEvent: (e) => void (e.kind === "disconnected" && log.push("disconnected")) });
  try {
    const fe = await ScriptedFrontend.connect(server.path);
    const { ram, call, kick } = await runningRing(fe, ProtocolFeature.REPLY_ACK | ProtocolFeature.CONFIGURE_MEM_SLOTS); // the first kick runs the handler
    await inHandler;
    fe.close();
    const second = ScriptedFrontend.connect(server.path);
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(log, ["handler start"], "no reset and no next connection while the handler runs");
    release();
    const fe2 = await second;
    assert.equal(await fe2.get("GET_QUEUE_NUM"), 2n, "the next front-end is served");
    assert.deepEqual(log.slice(0, 4), ["handler start", "handler end", "reset", "disconnected"]);
    fe2.close();
    await server.done;
    for (const x of [call, kick]) x.close();
    ram.dispose();
  } finally {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the MEM_RW gate bit is configurable: offered at the chosen bit only", async () => {
  for (const [memRw, bit] of [[true, 63n], [{ bit: 40 }, 40n]] as const) {
    const { fe, served } = servedOnPair(device, { memRw });
    const pf = (await fe.get("GET_PROTOCOL_FEATURES")) as bigint;
    assert.equal(pf & (1n << bit), 1n << bit, `bit ${bit} offered`);
    assert.equal(pf & ((1n << 63n) | (1n << 40n)) & ~(1n << bit), 0n, "and no other gate bit");
    fe.close();
    await served;
  }
});

test("a kick fd that is no eventfd (a short read) breaks its ring visibly: err fd signalled, queue-broken reported", async () => {
  const [mine, theirs] = socketPair();
  const events: string[] = [];
  const served = serveFd(theirs, device, { onEvent: (e) => void (e.kind === "queue-broken" && events.push(`broken ${e.index}`)) });
  const fe = new ScriptedFrontend(new Endpoint(mine));
  const { ram, call, kick } = await runningRing(fe, ProtocolFeature.REPLY_ACK | ProtocolFeature.CONFIGURE_MEM_SLOTS);
  const err = EventFd.create();
  assert.equal(await fe.ack("SET_VRING_ERR", { index: 0, noFd: false }, [err.fd]), 0n);
  const [kickMine, kickTheirs] = socketPair(); // a socket, not an eventfd
  assert.equal(await fe.ack("SET_VRING_KICK", { index: 0, noFd: false }, [kickTheirs.fd]), 0n);
  kickTheirs.close();
  writeSync(kickMine.fd, Buffer.from([1, 2, 3])); // 3 bytes: not a u64 counter
  assert.equal(await err.wait(), 1n, "the err fd was signalled");
  assert.deepEqual(events, ["broken 0"]);
  assert.equal(await fe.get("GET_QUEUE_NUM"), 2n, "the connection goes on");
  fe.close();
  await served;
  for (const x of [call, kick, err, kickMine]) x.close();
  ram.dispose();
});

test("more hostile requests: out-of-range ring indices, a status beyond a byte, VRING_KICK; fds closed, unanswerable ones drop", async () => {
  const before = readdirSync("/proc/self/fd").length;
  const { fe, served } = servedOnPair(device);
  assert.equal(await fe.ack("SET_PROTOCOL_FEATURES", ProtocolFeature.REPLY_ACK | ProtocolFeature.STATUS), 0n);
  const stray = EventFd.create();
  assert.equal(await fe.ack("SET_VRING_CALL", { index: 9, noFd: false }, [stray.fd]), 1n, "no queue 9");
  assert.equal(await fe.ack("SET_VRING_ERR", { index: 2, noFd: false }, [stray.fd]), 1n, "no queue 2 (queueCount 2)");
  assert.equal(await fe.ack("SET_VRING_KICK", { index: 200, noFd: false }, [stray.fd]), 1n);
  assert.equal(await fe.ack("SET_STATUS", 0x100n), 1n, "a status is one byte");
  assert.equal(await fe.get("GET_STATUS"), 0n, "and was not taken");
  assert.equal(await fe.ack("VRING_KICK", { index: 0, num: 0 }), 1n, "in-band kicks were not negotiated");
  assert.equal(await fe.get("GET_QUEUE_NUM"), 2n, "still serving");
  // GET_VRING_BASE always has a reply, and there is none to give for a queue that does not exist.
  await fe.send("GET_VRING_BASE", { index: 7, num: 0 });
  await assert.rejects(fe.ep.recv(), (e: unknown) => (e as { code?: string }).code === "EOF", "dropped");
  await served;
  fe.close();
  stray.close();
  assert.equal(readdirSync("/proc/self/fd").length, before, "every fd closed");
});
