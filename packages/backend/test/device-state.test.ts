/**
 * Device state transfer (docs/protocol.md#device-state-transfer): SET_DEVICE_STATE_FD and
 * CHECK_DEVICE_STATE over a real socket, the state through a real pipe (larger than the pipe's
 * buffer, so both sides wait on each other through the reactor), a hand-played front-end, and what a
 * hostile one gets: the spec's error reply, a typed error, every fd closed once, the connection up.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { GuestRam } from "@vhostkit/regions";
import { createPipe, Endpoint, EventFd, PipeEnd, socketPair, type OwnedFd } from "@vhostkit/transport";
import { DeviceStateDirection, ProtocolFeature, VirtioFeature, type DeviceStateReply } from "@vhostkit/wire";
import { BackendError, serveFd, type BackendEvent, type DeviceBackend, type DispatcherOptions, type StateReader, type StateWriter } from "../src/index.js";
import { reverser } from "./helpers/ring-rig.js";
import { ScriptedFrontend, startRing } from "./helpers/scripted-frontend.js";

const MAGIC = new TextEncoder().encode("tally\0\0\x01");

/** A device whose state is a blob: 8 magic bytes, u32 length, the blob; `loaded` is the last blob loaded. */
function blobDevice(blob: Uint8Array) {
  const device: DeviceBackend & { blob: Uint8Array } = {
    ...reverser(),
    features: 0n,
    blob,
    async saveState(out: StateWriter) {
      const head = new Uint8Array(12);
      head.set(MAGIC);
      new DataView(head.buffer).setUint32(8, device.blob.byteLength, true);
      await out.write(head);
      for (let at = 0; at < device.blob.byteLength; at += 100_000) await out.write(device.blob.subarray(at, at + 100_000));
    },
    async loadState(input: StateReader) {
      const head = await input.readExactly(12);
      if (!MAGIC.every((b, i) => head[i] === b)) throw new BackendError("STATE_INVALID", "tally: bad magic");
      const len = new DataView(head.buffer, head.byteOffset).getUint32(8, true);
      const next = await input.readExactly(len);
      if (!(await input.atEnd())) throw new BackendError("STATE_INVALID", "tally: trailing bytes"); // checked before committing
      device.blob = next;
    },
  };
  return device;
}

const openFds = (): number => readdirSync("/proc/self/fd").length;

/** A served device on a socketpair with DEVICE_STATE (and REPLY_ACK) negotiated. */
async function served(device: DeviceBackend, options: DispatcherOptions = {}, negotiate = true) {
  const [mine, theirs] = socketPair();
  const fe = new ScriptedFrontend(new Endpoint(mine));
  const events: BackendEvent[] = [];
  const done = serveFd(theirs, device, { ...options, onEvent: (e) => events.push(e) });
  const offered = (await fe.get("GET_PROTOCOL_FEATURES")) as bigint;
  const acked = ProtocolFeature.REPLY_ACK | ProtocolFeature.CONFIGURE_MEM_SLOTS | (negotiate ? ProtocolFeature.DEVICE_STATE : 0n);
  assert.equal(await fe.ack("SET_PROTOCOL_FEATURES", acked), 0n);
  assert.equal(await fe.ack("SET_FEATURES", VirtioFeature.VERSION_1 | VirtioFeature.PROTOCOL_FEATURES), 0n);
  const stateEvents = () => events.filter((e) => e.kind === "device-state");
  const rejected = () => events.filter((e): e is Extract<BackendEvent, { kind: "rejected" }> => e.kind === "rejected");
  const end = async () => {
    fe.close();
    await done;
  };
  return { fe, events, offered, stateEvents, rejected, end };
}

/** SET_DEVICE_STATE_FD with `fds`; the decoded reply and any fd it carries. */
async function setStateFd(fe: ScriptedFrontend, direction: number, fds: readonly number[], phase = 0) {
  await fe.send("SET_DEVICE_STATE_FD", { direction, phase }, { fds });
  const { value, msg } = await fe.reply("SET_DEVICE_STATE_FD");
  return { reply: value as DeviceStateReply, fds: msg.fds };
}

/** Reads the pipe end to EOF. */
async function readAll(end: PipeEnd): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for (let c = await end.read(); c.byteLength > 0; c = await end.read()) parts.push(c);
  return Buffer.concat(parts);
}

/** Saves the device's state the way a front-end does, through a pipe of ours (or the back-end's). */
async function save(fe: ScriptedFrontend): Promise<{ bytes: Uint8Array; check: bigint; ownPipe: boolean }> {
  const { readEnd, writeEnd } = createPipe();
  const { reply, fds } = await setStateFd(fe, DeviceStateDirection.SAVE, [writeEnd.fd]);
  writeEnd.close(); // the back-end has its copy: EOF comes when it closes it
  assert.equal(reply.error, 0);
  assert.equal(fds.length, reply.noFd ? 0 : 1);
  const theirs = fds[0];
  if (theirs !== undefined) readEnd.close();
  const end = PipeEnd.open(theirs ?? readEnd, "read");
  try {
    const bytes = await readAll(end);
    return { bytes, check: (await fe.get("CHECK_DEVICE_STATE")) as bigint, ownPipe: !reply.noFd };
  } finally {
    end.close();
  }
}

/** Loads `bytes` into the device through a pipe; returns CHECK_DEVICE_STATE's answer. */
async function load(fe: ScriptedFrontend, bytes: Uint8Array): Promise<bigint> {
  const { readEnd, writeEnd } = createPipe();
  const { reply, fds } = await setStateFd(fe, DeviceStateDirection.LOAD, [readEnd.fd]);
  readEnd.close();
  assert.equal(reply.error, 0);
  const theirs = fds[0];
  if (theirs !== undefined) writeEnd.close();
  const end = PipeEnd.open(theirs ?? writeEnd, "write");
  try {
    await end.write(bytes).catch(() => undefined); // a back-end that refuses early closes its end: EPIPE
  } finally {
    end.close();
  }
  return (await fe.get("CHECK_DEVICE_STATE")) as bigint;
}

const blob = (n: number) => Uint8Array.from({ length: n }, (_, i) => (i * 7 + (i >> 9)) & 0xff);

test("DEVICE_STATE is offered only with both state hooks; 1 MiB of state saved from one instance and loaded into another through pipes, in both pipe modes", async () => {
  const plain = await served({ ...reverser(), features: 0n }, {}, false);
  assert.equal(plain.offered & ProtocolFeature.DEVICE_STATE, 0n);
  await plain.end();
  const before = openFds();
  for (const ownStatePipe of [false, true]) {
    const source = await served(blobDevice(blob(1 << 20)), { ownStatePipe });
    const target = blobDevice(new Uint8Array(0));
    const dest = await served(target, { ownStatePipe });
    try {
      assert.notEqual(source.offered & ProtocolFeature.DEVICE_STATE, 0n);
      const saved = await save(source.fe);
      assert.equal(saved.ownPipe, ownStatePipe, "reply bit 8 clear exactly when the back-end returns its own pipe");
      assert.equal(saved.check, 0n);
      assert.equal(saved.bytes.byteLength, 12 + (1 << 20));
      assert.equal(await load(dest.fe, saved.bytes), 0n);
      assert.deepEqual(target.blob, blob(1 << 20));
      assert.deepEqual(
        source.stateEvents().map((e) => [e.kind === "device-state" && e.direction, e.kind === "device-state" && e.bytes]),
        [["save", 12 + (1 << 20)]],
      );
      assert.deepEqual(
        dest.stateEvents().map((e) => [e.kind === "device-state" && e.direction, e.kind === "device-state" && e.bytes]),
        [["load", 12 + (1 << 20)]],
      );
      // A second save on the same connection works as the first.
      assert.deepEqual((await save(dest.fe)).bytes, saved.bytes);
    } finally {
      await source.end();
      await dest.end();
    }
  }
  assert.equal(openFds(), before, "every pipe end and socket closed");
});

test("hostile SET_DEVICE_STATE_FD: bad direction or phase, no fd, an fd that is no pipe or the wrong end, a started ring, not negotiated: error reply 0x101, typed error, fd closed, connection up", async () => {
  const before = openFds();
  const dev = blobDevice(blob(100));
  const s = await served(dev);
  const ram = new GuestRam({ blocks: [{ guestPhysAddr: 0n, size: 1n << 20n }] });
  try {
    const refusedWith = async (direction: number, fds: readonly number[], text: RegExp, phase = 0) => {
      const { reply, fds: got } = await setStateFd(s.fe, direction, fds, phase);
      assert.deepEqual(reply, { error: 1, noFd: true });
      assert.equal(got.length, 0);
      const last = s.rejected().at(-1);
      assert.equal(last?.name, "SET_DEVICE_STATE_FD");
      assert.equal(last?.error.code, "PROTOCOL");
      assert.match(last?.error.message ?? "", text);
    };
    const withPipe = async (f: (p: { readEnd: OwnedFd; writeEnd: OwnedFd }) => Promise<void>) => {
      const p = createPipe();
      try {
        await f(p);
      } finally {
        p.readEnd.close();
        p.writeEnd.close();
      }
    };
    await withPipe((p) => refusedWith(2, [p.writeEnd.fd], /direction 2 is neither save/));
    await withPipe((p) => refusedWith(DeviceStateDirection.SAVE, [p.writeEnd.fd], /phase 1 is not stopped/, 1));
    await refusedWith(DeviceStateDirection.SAVE, [], /0 fds attached, expected 1/);
    const ev = EventFd.create();
    await refusedWith(DeviceStateDirection.SAVE, [ev.fd], /not a pipe/);
    ev.close();
    const [a, b] = socketPair();
    await refusedWith(DeviceStateDirection.LOAD, [a.fd], /not a pipe/);
    a.close();
    b.close();
    await withPipe((p) => refusedWith(DeviceStateDirection.SAVE, [p.readEnd.fd], /is the read end, expected the write end/));
    await withPipe((p) => refusedWith(DeviceStateDirection.LOAD, [p.writeEnd.fd], /is the write end, expected the read end/));
    // A started ring: the state moves only while the device is stopped.
    const mem = ram.memoryTable()[0]!;
    assert.equal(await s.fe.ack("ADD_MEM_REG", { guestPhysAddr: 0n, memorySize: 1n << 20n, userAddr: mem.userspaceAddr, mmapOffset: 0n }, [mem.fd]), 0n);
    {
      using _ring = await startRing(s.fe, ram);
      await withPipe((p) => refusedWith(DeviceStateDirection.SAVE, [p.writeEnd.fd], /vring 0 is started/));
      assert.deepEqual(await s.fe.get("GET_VRING_BASE", { index: 0, num: 0 }), { index: 0, num: 0 });
    }
    // A ring start while a load runs (the front-end has not closed its end): refused, the ring stays stopped.
    {
      const p = createPipe();
      assert.equal((await setStateFd(s.fe, DeviceStateDirection.LOAD, [p.readEnd.fd])).reply.error, 0);
      p.readEnd.close();
      const kick = EventFd.create();
      assert.equal(await s.fe.ack("SET_VRING_KICK", { index: 0, noFd: false }, [kick.fd]), 1n);
      kick.close();
      assert.match(s.rejected().at(-1)?.error.message ?? "", /set_vring_kick: a device state transfer is running/);
      p.writeEnd.close(); // EOF: an empty state, which the device refuses
      assert.equal(await s.fe.get("CHECK_DEVICE_STATE"), 1n);
      assert.equal(s.rejected().at(-1)?.error.code, "STATE_TRUNCATED");
    }
    // CHECK_DEVICE_STATE with no transfer: u64 1 and a typed error.
    assert.equal(await s.fe.get("CHECK_DEVICE_STATE"), 1n);
    assert.equal(s.rejected().at(-1)?.name, "CHECK_DEVICE_STATE");
    // Once stopped, the same connection saves fine.
    assert.equal((await save(s.fe)).check, 0n);
  } finally {
    await s.end();
    ram.dispose();
  }
  // Not negotiated: refused with the error reply as well.
  const n = await served(blobDevice(blob(1)), {}, false);
  const p = createPipe();
  try {
    assert.deepEqual((await setStateFd(n.fe, 0, [p.writeEnd.fd])).reply, { error: 1, noFd: true });
    assert.equal(n.rejected().at(-1)?.error.code, "NOT_NEGOTIATED");
  } finally {
    p.readEnd.close();
    p.writeEnd.close();
    await n.end();
  }
  assert.equal(openFds(), before);
});

test("hostile state on load: truncated, garbage, trailing bytes, over the size limit; a device hook that throws: CHECK_DEVICE_STATE answers 1 with a typed error, the device keeps its state", async () => {
  const before = openFds();
  const good = new Uint8Array(12 + 5000);
  good.set(MAGIC);
  new DataView(good.buffer).setUint32(8, 5000, true);
  good.set(blob(5000), 12);
  const dev = blobDevice(Uint8Array.of(1, 2, 3));
  const s = await served(dev, { maxDeviceStateBytes: 8192 });
  const cases: [Uint8Array, string, RegExp][] = [
    [good.subarray(0, 12 + 4000), "STATE_TRUNCATED", /state ended at byte 0xfac, 0x1388 more bytes expected from 0xc/],
    [new Uint8Array(0), "STATE_TRUNCATED", /state ended at byte 0x0/],
    [blob(64), "STATE_INVALID", /bad magic/],
    [Buffer.concat([good, Uint8Array.of(0)]), "STATE_INVALID", /tally: trailing bytes/],
    [Buffer.concat([good, new Uint8Array(4000)]), "STATE_INVALID", /longer than the limit of 0x2000 bytes/],
  ];
  try {
    for (const [bytes, code, text] of cases) {
      assert.equal(await load(s.fe, bytes), 1n, `${code} ${text}`);
      const last = s.rejected().at(-1);
      assert.equal(last?.name, "CHECK_DEVICE_STATE");
      assert.equal(last?.error.code, code);
      assert.match(last?.error.message ?? "", text);
      const ended = s.stateEvents().at(-1);
      assert.equal(ended?.kind === "device-state" && ended.error?.code, code);
    }
    assert.deepEqual(dev.blob, Uint8Array.of(1, 2, 3), "only the refused blobs came and went; the blob is as it was");
    assert.equal(await load(s.fe, good), 0n);
    assert.deepEqual(dev.blob, blob(5000));
  } finally {
    await s.end();
  }
  // A hook that throws something untyped: STATE_SAVE_FAILED on save, STATE_INVALID on load.
  const broken = {
    ...blobDevice(blob(1)),
    saveState: async (out: StateWriter) => {
      await out.write(Uint8Array.of(1));
      throw new Error("disk on fire");
    },
    loadState: () => {
      throw new TypeError("not today");
    },
  };
  const b = await served(broken);
  try {
    const saved = await save(b.fe);
    assert.deepEqual([...saved.bytes], [1]);
    assert.equal(saved.check, 1n);
    assert.equal(b.rejected().at(-1)?.error.code, "STATE_SAVE_FAILED");
    assert.match(b.rejected().at(-1)?.error.message ?? "", /disk on fire/);
    assert.equal(await load(b.fe, good), 1n);
    assert.equal(b.rejected().at(-1)?.error.code, "STATE_INVALID");
    assert.match(b.rejected().at(-1)?.error.message ?? "", /not today/);
  } finally {
    await b.end();
  }
  assert.equal(openFds(), before);
});

test("a front-end that stops reading mid-save (STATE_IO), and one that disconnects mid-transfer: the transfer ends, its pipe end is closed once, the device serves the next connection", async () => {
  const before = openFds();
  const dev = blobDevice(blob(1 << 20));
  const s = await served(dev);
  try {
    const { readEnd, writeEnd } = createPipe();
    const { reply } = await setStateFd(s.fe, DeviceStateDirection.SAVE, [writeEnd.fd]);
    writeEnd.close();
    assert.equal(reply.error, 0);
    const end = PipeEnd.open(readEnd, "read");
    assert.ok((await end.read(10)).byteLength > 0);
    end.close(); // the back-end's next write meets EPIPE
    assert.equal(await s.fe.get("CHECK_DEVICE_STATE"), 1n);
    assert.equal(s.rejected().at(-1)?.error.code, "STATE_IO");
    // Now a transfer nobody reads, and the front-end goes away.
    const p = createPipe();
    assert.equal((await setStateFd(s.fe, DeviceStateDirection.SAVE, [p.writeEnd.fd])).reply.error, 0);
    p.writeEnd.close();
    await s.end();
    p.readEnd.close();
    assert.equal(s.stateEvents().at(-1)?.kind === "device-state" && s.stateEvents().at(-1)?.error?.code, "STATE_IO");
  } finally {
    await s.end();
  }
  const again = await served(dev);
  try {
    assert.equal((await save(again.fe)).check, 0n);
  } finally {
    await again.end();
  }
  assert.equal(openFds(), before);
});
