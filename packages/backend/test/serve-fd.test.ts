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
import { BackendError, Dispatcher, FRAMEWORK_FEATURES, serve, serveFd, type BackendEvent, type DeviceBackend, type DeviceContext } from "../src/index.js";
import { backendChannel, ScriptedFrontend, startRing, type StartedRing } from "./helpers/scripted-frontend.js";

const device: DeviceBackend = { features: 1n << 5n, queueCount: 2, maxQueueSize: 128, processQueue() {} };

/**
 * `device` served on one end of a socketpair (serveFd), a scripted front-end on the other. Disposing
 * it (`await using`) closes the front-end and waits until the back-end let go of the connection.
 */
function servedOnPair(
  ...args: Parameters<typeof serveFd> extends [unknown, ...infer R] ? R : never
): { fe: ScriptedFrontend; served: Promise<void> } & AsyncDisposable {
  const [mine, theirs] = socketPair();
  const served = serveFd(theirs, ...args);
  const fe = new ScriptedFrontend(new Endpoint(mine));
  return {
    served,
    fe,
    async [Symbol.asyncDispose]() {
      fe.close();
      await served;
    },
  };
}

/**
 * `fe` negotiates `protocolFeatures` (then runs `beforeFeatures`, e.g. to set up the back-end
 * channel) and VERSION_1 | PROTOCOL_FEATURES, adds 1 MiB of guest RAM at 0, and starts vring 0.
 */
async function runningRing(fe: ScriptedFrontend, protocolFeatures: bigint, beforeFeatures?: () => Promise<void>): Promise<{ ram: GuestRam } & StartedRing> {
  assert.equal(await fe.ack("SET_PROTOCOL_FEATURES", protocolFeatures), 0n);
  await beforeFeatures?.();
  assert.equal(await fe.ack("SET_FEATURES", VirtioFeature.VERSION_1 | VirtioFeature.PROTOCOL_FEATURES), 0n);
  const ram = new GuestRam({ blocks: [{ guestPhysAddr: 0n, size: 1n << 20n }] });
  try {
    const b = ram.memoryTable()[0]!;
    assert.equal(await fe.ack("ADD_MEM_REG", { guestPhysAddr: 0n, memorySize: 1n << 20n, userAddr: b.userspaceAddr, mmapOffset: 0n }, [b.fd]), 0n);
    const ring = await startRing(fe, ram);
    const close = (): void => {
      ring.close();
      ram.dispose();
    };
    return { ram, driver: ring.driver, call: ring.call, kick: ring.kick, close, [Symbol.dispose]: close };
  } catch (err) {
    ram.dispose();
    throw err;
  }
}

/** Events reported to `onEvent`, and a wait for the next one that matches. */
function eventLog<E>() {
  const seen: E[] = [];
  const waiters: { match: (e: E) => boolean; resolve: () => void }[] = [];
  return {
    seen,
    push(e: E): void {
      seen.push(e);
      for (const w of waiters.splice(0))
        if (w.match(e)) w.resolve();
        else waiters.push(w);
    },
    /** Resolves when an event that matches arrives (from now on). */
    next(match: (e: E) => boolean): Promise<void> {
      return new Promise((resolve) => waiters.push({ match, resolve }));
    },
  };
}

test("serveFd answers a front-end on a connected socket and resolves when it leaves", async () => {
  await using pair = servedOnPair(device);
  const { fe, served } = pair;
  assert.equal(await fe.get("GET_FEATURES"), (1n << 5n) | FRAMEWORK_FEATURES);
  assert.notEqual(((await fe.get("GET_FEATURES")) as bigint) & VirtioFeature.VERSION_1, 0n);
  await fe.send("SET_PROTOCOL_FEATURES", 0n);
  assert.equal(await fe.get("GET_QUEUE_NUM"), 2n);
  fe.close();
  await served;
});

test("an invalid device definition is a BAD_DEVICE error, the socket is not used", () => {
  const [a, b] = socketPair();
  using ep = new Endpoint(a);
  using _peer = b;
  // ACCESS_PLATFORM: addresses would be IOVAs, and there is no IOTLB support.
  for (const bad of [
    { ...device, queueCount: 0 },
    { ...device, maxQueueSize: 100 },
    { ...device, shmemRegions: () => [{ shmid: 1, size: 4097n }] },
    { ...device, features: VirtioFeature.ACCESS_PLATFORM },
  ]) {
    assert.throws(
      () => new Dispatcher(ep, bad),
      (e: unknown) => e instanceof BackendError && e.code === "BAD_DEVICE",
    );
  }
});

test("a front-end that keeps requests queued does not starve the event loop", async () => {
  const [mine, theirs] = socketPair();
  let served = 0;
  const fe = new ScriptedFrontend(new Endpoint(mine));
  const total = 100; // well within the socket buffers of both directions (each message costs one skb)
  let done: Promise<void> | undefined;
  try {
    // Every request is in the socket before the dispatcher starts: its recv never has to wait.
    for (let i = 0; i < total; i++) await fe.send("GET_QUEUE_NUM", undefined);
    done = serveFd(theirs, device, { onEvent: (e) => void (e.kind === "request" && served++) });
    const servedWhenTimerRan = await new Promise<number>((resolve) => setImmediate(() => resolve(served)));
    assert.ok(servedWhenTimerRan < total, `a macrotask ran after ${servedWhenTimerRan} of ${total} queued requests`);
    for (let i = 0; i < total; i++) assert.equal((await fe.reply("GET_QUEUE_NUM")).value, 2n);
    assert.equal(served, total);
  } finally {
    fe.close();
    if (done === undefined) theirs.close();
    await done;
  }
});

test("device hooks that throw are reported, not fatal: the server serves the next front-end", async () => {
  const dir = mkdtempSync(join(tmpdir(), "vhostkit-throwing-"));
  const events = eventLog<string>();
  const throwing: DeviceBackend = {
    ...device,
    reset() {
      throw new Error("reset failed");
    },
  };
  try {
    assert.throws(
      () => serve(join(dir, "bad.sock"), { ...device, queueCount: 0 }),
      (e: unknown) => e instanceof BackendError && e.code === "BAD_DEVICE",
      "an invalid device is refused before listening",
    );
    const server = serve(join(dir, "blk.sock"), throwing, {
      connections: 2,
      onEvent: (e) => {
        events.push(e.kind === "device-error" ? `device-error ${(e.error as Error).message}` : e.kind);
        if (e.kind === "disconnected") throw new Error("a throwing listener");
      },
    });
    try {
      for (let i = 0; i < 2; i++) {
        using fe = await ScriptedFrontend.connect(server.path);
        assert.equal(await fe.get("GET_QUEUE_NUM"), 2n, `front-end ${i + 1} served`);
        const gone = events.next((e) => e === "disconnected");
        fe.close();
        await gone;
      }
      await server.done;
      assert.deepEqual(
        events.seen.filter((e) => e.startsWith("device-error")),
        ["device-error reset failed", "device-error reset failed"],
      );
    } finally {
      server.close();
    }
  } finally {
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
  try {
    assert.equal(await fe.ack("SET_PROTOCOL_FEATURES", ProtocolFeature.REPLY_ACK | ProtocolFeature.CONFIG), 0n);
    assert.equal(await fe.ack("SET_CONFIG", { offset: 4, flags: 0, data: Uint8Array.of(1, 2, 3, 4) }), 0n);
    assert.deepEqual(writes, [[4, [1, 2, 3, 4]]]);
    const back = (await fe.get("GET_CONFIG", { offset: 0, flags: 0, data: new Uint8Array(8) })) as { data: Uint8Array };
    assert.deepEqual([...back.data], [0, 0, 0, 0, 1, 2, 3, 4]);
    assert.equal(await fe.ack("SET_CONFIG", { offset: 8, flags: 0, data: Uint8Array.of(9) }), 1n, "the device refused it");
    assert.equal(writes.length, 1);
  } finally {
    fe.close();
    await served;
  }
});

test("REPLY_ACK exactly per spec: NEED_REPLY is acked only once REPLY_ACK was negotiated", async () => {
  await using pair = servedOnPair(device);
  const { fe, served } = pair;
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
  await using pair = servedOnPair(changing);
  const { fe, served } = pair;
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
    await using pair = servedOnPair({ ...device, getConfig: (_offset, size) => new Uint8Array(size), start: (ctx) => started(ctx) }, { memRw });
    const { fe, served } = pair;
    const pf =
      ProtocolFeature.REPLY_ACK | ProtocolFeature.BACKEND_REQ | ProtocolFeature.CONFIG | ProtocolFeature.CONFIGURE_MEM_SLOTS | (memRw ? VHOSTKIT_MEM_RW : 0n);
    let channel: Awaited<ReturnType<typeof backendChannel>> | undefined;
    try {
      using _ring = await runningRing(fe, pf, async () => void (channel = await backendChannel(fe, { maxPayload: MEM_RW_MAX_PAYLOAD })));
      assert.ok(channel !== undefined);
      const ctx = await context;
      // A CONFIG_CHANGE_MSG answered with a 5000-byte "ack": past the 4 KiB cap.
      const changed = ctx.client.configChanged();
      const m = await channel.recv();
      await channel.send(m.request, 0x5, new Uint8Array(5000));
      const err = await changed.then(
        () => undefined,
        (e: unknown) => e,
      );
      const codes: string[] = [];
      for (let e = err as { code?: string; cause?: unknown } | undefined; e !== undefined; e = e.cause as typeof e) codes.push(String(e.code));
      if (memRw) assert.ok(!codes.includes("OVERSIZE"), `with MEM_RW the reply is read (and refused as a bad ack): ${codes.join(" <- ")}`);
      else assert.ok(codes.includes("OVERSIZE"), `the header's size is refused before any byte of it is read: ${codes.join(" <- ")}`);
      fe.close();
      await served;
    } finally {
      channel?.close();
    }
  }
});

test("REM_MEM_REG that comes with an fd is served and the fd closed unused (docs/protocol.md#file-descriptors)", async () => {
  const before = readdirSync("/proc/self/fd").length;
  {
    await using pair = servedOnPair(device);
    const { fe } = pair;
    using ram = new GuestRam({ blocks: [{ guestPhysAddr: 0n, size: 1n << 20n }] });
    assert.equal(await fe.ack("SET_PROTOCOL_FEATURES", ProtocolFeature.REPLY_ACK | ProtocolFeature.CONFIGURE_MEM_SLOTS), 0n);
    const b = ram.memoryTable()[0]!;
    const region = { guestPhysAddr: 0n, memorySize: 1n << 20n, userAddr: b.userspaceAddr, mmapOffset: 0n };
    assert.equal(await fe.ack("ADD_MEM_REG", region, [b.fd]), 0n);
    assert.equal(await fe.ack("REM_MEM_REG", region, [b.fd]), 0n, "removed, its fd ignored");
    assert.equal(await fe.ack("REM_MEM_REG", region, [b.fd]), 1n, "nothing left to remove");
    assert.equal(await fe.ack("REM_MEM_REG", region, [b.fd, b.fd]), 1n, "two fds: refused");
  } // the front-end, the connection and guest RAM are gone here
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
  const events = eventLog<BackendEvent>();
  let server: ReturnType<typeof serve> | undefined;
  try {
    server = serve(join(dir, "slow.sock"), slow, {
      connections: 2,
      onEvent: (e) => {
        events.push(e);
        if (e.kind === "disconnected") log.push("disconnected");
      },
    });
    using fe = await ScriptedFrontend.connect(server.path);
    using _ring = await runningRing(fe, ProtocolFeature.REPLY_ACK | ProtocolFeature.CONFIGURE_MEM_SLOTS); // the first kick runs the handler
    await inHandler;
    // The connection's end stops the rings at once ("running" false); the reset waits for the handler.
    const stopped = events.next((e) => e.kind === "running" && !e.running);
    fe.close();
    await stopped;
    using fe2 = await ScriptedFrontend.connect(server.path);
    assert.deepEqual(log, ["handler start"], "no reset and no next connection while the handler runs");
    release();
    assert.equal(await fe2.get("GET_QUEUE_NUM"), 2n, "the next front-end is served");
    assert.deepEqual(log.slice(0, 4), ["handler start", "handler end", "reset", "disconnected"]);
    fe2.close();
    await server.done;
  } finally {
    release();
    server?.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the MEM_RW gate bit is configurable: offered at the chosen bit only", async () => {
  for (const [memRw, bit] of [
    [true, 63n],
    [{ bit: 40 }, 40n],
  ] as const) {
    await using pair = servedOnPair(device, { memRw });
    const pf = (await pair.fe.get("GET_PROTOCOL_FEATURES")) as bigint;
    assert.equal(pf & (1n << bit), 1n << bit, `bit ${bit} offered`);
    assert.equal(pf & ((1n << 63n) | (1n << 40n)) & ~(1n << bit), 0n, "and no other gate bit");
  }
});

test("a kick fd that is no eventfd (a short read) breaks its ring visibly: err fd signalled, queue-broken reported", async () => {
  const events: string[] = [];
  await using pair = servedOnPair(device, { onEvent: (e) => void (e.kind === "queue-broken" && events.push(`broken ${e.index}`)) });
  const { fe } = pair;
  using _ring = await runningRing(fe, ProtocolFeature.REPLY_ACK | ProtocolFeature.CONFIGURE_MEM_SLOTS);
  using err = EventFd.create();
  assert.equal(await fe.ack("SET_VRING_ERR", { index: 0, noFd: false }, [err.fd]), 0n);
  const [kickMine, kickTheirs] = socketPair(); // a socket, not an eventfd
  using _kickMine = kickMine;
  try {
    assert.equal(await fe.ack("SET_VRING_KICK", { index: 0, noFd: false }, [kickTheirs.fd]), 0n);
  } finally {
    kickTheirs.close();
  }
  writeSync(kickMine.fd, Buffer.from([1, 2, 3])); // 3 bytes: not a u64 counter
  assert.equal(await err.wait(), 1n, "the err fd was signalled");
  assert.deepEqual(events, ["broken 0"]);
  assert.equal(await fe.get("GET_QUEUE_NUM"), 2n, "the connection goes on");
});

test("more hostile requests: out-of-range ring indices, a status beyond a byte, VRING_KICK; fds closed, unanswerable ones drop", async () => {
  const before = readdirSync("/proc/self/fd").length;
  {
    await using pair = servedOnPair(device);
    const { fe, served } = pair;
    using stray = EventFd.create();
    assert.equal(await fe.ack("SET_PROTOCOL_FEATURES", ProtocolFeature.REPLY_ACK | ProtocolFeature.STATUS), 0n);
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
  }
  assert.equal(readdirSync("/proc/self/fd").length, before, "every fd closed");
});
