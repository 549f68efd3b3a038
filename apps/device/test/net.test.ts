/**
 * `vhost-user-device net` and the virtio-net driver against vhostkit's own virtio-net example
 * device (packages/backend/examples/net-device.mjs, a second process): gen through a reflecting
 * port with two queue pairs (MQ and the control queue), sink and echo against its generator; a
 * hostile device's receive format fails the driver with a typed error. And the test frames
 * themselves: checksums recomputed here from scratch, every changed byte detected.
 */
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Guest, isFrontendError, NetDriver } from "@vhostkit/frontend";
import { swapMacs, UdpFrames } from "../src/net/udp-frames.js";
import { cli } from "./helpers/run-cli.js";
import { LineProcess } from "./helpers/line-process.js";

const NET_DEVICE = fileURLToPath(new URL("../../../packages/backend/examples/net-device.mjs", import.meta.url));
const HOSTILE = fileURLToPath(new URL("./fixtures/hostile-net.mjs", import.meta.url));

const cleanups: (() => Promise<unknown>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function socketPath(name: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "vhostkit-net-"));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return join(dir, name);
}

/** Starts a device script with `args` on a fresh socket; resolves once it listens. */
async function startDevice(script: string, args: readonly string[]): Promise<{ socket: string; proc: LineProcess }> {
  const socket = await socketPath("net.sock");
  const proc = new LineProcess(process.execPath, [script, "--socket", socket, ...args]);
  cleanups.push(() => proc.stop());
  await proc.line((l) => l.startsWith("listening"));
  return { socket, proc };
}

interface DeviceStats {
  readonly received: number;
  readonly sent: number;
  readonly activePairs: number;
  readonly receivedByPair: number[];
}

/** The example device's last "stats {...}" line, after SIGTERM (its earlier lines: `proc.lines`). */
async function finalStats(proc: LineProcess): Promise<DeviceStats> {
  await proc.stop();
  const line = proc.lines.filter((l) => l.startsWith("stats ")).at(-1);
  assert.ok(line !== undefined, `no stats line in ${proc.lines.join("\n")}`);
  return JSON.parse(line.slice(6)) as DeviceStats;
}

/** Sum of big-endian 16-bit words, folded. */
function onesSum(bytes: Uint8Array, from: number, to: number, start = 0): number {
  let s = start;
  for (let i = from; i < to; i += 2) s += (bytes[i] as number) * 256 + (i + 1 < to ? (bytes[i + 1] as number) : 0);
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 0x10000);
  return s;
}

describe("test frames", () => {
  const src = Uint8Array.of(2, 0, 0, 0, 0, 1);
  const dst = Uint8Array.of(2, 0, 0, 0, 0, 2);
  for (const size of [60, 64, 65, 1500, 1514]) {
    test(`${size} bytes: IPv4 and UDP checksums verify from scratch for sequence numbers across 2^16 and 2^32`, () => {
      const f = new UdpFrames(size, src, dst);
      for (const seq of [0, 1, 255, 256, 65535, 65536, 0xffff_ffff, 0x1_0000_0000, 2 ** 40 + 12345]) {
        const b = f.frame(seq).slice();
        assert.equal(b.byteLength, size);
        assert.equal(onesSum(b, 14, 34), 0xffff, `IPv4 header checksum, seq ${seq}`);
        // UDP: pseudo header (addresses, protocol 17, UDP length) plus header and payload.
        const udpLen = size - 34;
        assert.equal(onesSum(b, 34, size, onesSum(b, 26, 34) + 17 + udpLen), 0xffff, `UDP checksum, seq ${seq}`);
        assert.deepEqual(f.check(b), { result: "ok", seq });
        swapMacs(b);
        assert.deepEqual(f.check(b), { result: "ok", seq }, "a reflected frame is still intact");
      }
    });
  }

  test("any byte changed after the MAC addresses is corrupt; another size, protocol or magic is foreign", () => {
    const f = new UdpFrames(128, src, dst);
    const good = f.frame(77).slice();
    for (let i = 12; i < good.byteLength; i++) {
      const b = good.slice();
      b[i] = (b[i] as number) ^ 0x10;
      const r = f.check(b).result;
      assert.notEqual(r, "ok", `byte ${i} changed`);
    }
    assert.equal(f.check(good.subarray(0, 127)).result, "foreign");
    const tcp = good.slice();
    tcp[23] = 6;
    assert.equal(f.check(tcp).result, "foreign");
    assert.throws(() => new UdpFrames(59, src, dst), RangeError);
    assert.throws(() => new UdpFrames(1515, src, dst), RangeError);
  });

  test("writeTo writes frame(seq) in place: whole the first time, then only what changes; classify reads it in place", () => {
    const f = new UdpFrames(100, src, dst);
    const buf = new Uint8Array(12 + 100).fill(0xee);
    for (const seq of [5, 6, 0x1_0000_0003, 7]) {
      assert.equal(f.writeTo(buf, 12, seq), 100);
      assert.deepEqual(buf.subarray(12), f.frame(seq), `seq ${seq}`);
      assert.equal(f.classify(buf, 12, 100), "ok");
      assert.equal(f.lastSeq, seq);
    }
    assert.deepEqual(buf.subarray(0, 12), new Uint8Array(12).fill(0xee), "nothing before the offset");
    // Reused: a byte outside the sequence number and checksum is not rewritten (so a device that
    // scribbled on its transmit buffer shows up as corrupt frames), at another offset all is.
    buf[12 + 60] = (buf[12 + 60] as number) ^ 1;
    f.writeTo(buf, 12, 8);
    assert.equal(f.classify(buf, 12, 100), "corrupt");
    f.writeTo(buf, 2, 9);
    assert.deepEqual(buf.subarray(2, 102), f.frame(9));
  });
});

interface Summary {
  readonly queuePairs: number;
  readonly mac: string | null;
  readonly sent: number;
  readonly ok: number;
  readonly drops: number;
  readonly corrupt: number;
  readonly foreign: number;
  readonly txFrames: number;
  readonly rxFrames: number;
  readonly failure: string | null;
}

describe("vhost-user-device net against the example virtio-net device", { timeout: 120_000 }, () => {
  test("gen over two queue pairs through a reflecting port: MAC from config, every frame back is intact, the device counted what we sent", async () => {
    const dev = await startDevice(NET_DEVICE, ["--mode", "reflect", "--pairs", "2", "--stats"]);
    const r = await cli("net", "gen", "--socket", dev.socket, "--queues", "2", "--seconds", "2", "--size", "256", "--json");
    assert.equal(r.code, 0, r.stderr);
    const s = JSON.parse(r.stdout) as Summary;
    assert.equal(s.failure, null);
    assert.equal(s.queuePairs, 2);
    assert.equal(s.mac, "52:54:00:12:34:56");
    assert.ok(s.ok > 1000, `back ${s.ok}`);
    assert.equal(s.corrupt, 0);
    assert.equal(s.foreign, 0);
    assert.equal(s.ok + s.drops, s.sent);
    assert.equal(s.txFrames, s.sent);
    const stats = await finalStats(dev.proc);
    assert.equal(stats.received, s.sent);
    assert.ok(stats.receivedByPair.length === 2 && stats.receivedByPair.every((n) => n > 0), `both transmit queues carried frames: ${stats.receivedByPair}`);
    // While connected (a stats line each second; the reset on disconnect puts it back to 1).
    const during = dev.proc.lines.filter((l) => l.startsWith("stats ")).map((l) => (JSON.parse(l.slice(6)) as DeviceStats).activePairs);
    assert.ok(during.includes(2), `VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET 2 on the control queue: ${during}`);
  });

  test("gen --rate paces the frames: never more than the rate over the run plus one bucket", async () => {
    const dev = await startDevice(NET_DEVICE, ["--mode", "reflect"]);
    const r = await cli("net", "gen", "--socket", dev.socket, "--seconds", "1", "--rate", "5000", "--json");
    assert.equal(r.code, 0, r.stderr);
    const s = JSON.parse(r.stdout) as Summary & { readonly seconds: number };
    assert.ok(s.sent > 0);
    // The token bucket holds at most max(32, rate / 100) frames; the run lasts `seconds`.
    assert.ok(s.sent <= 5000 * s.seconds + 50, `sent ${s.sent} in ${s.seconds} s`);
    assert.equal(s.corrupt, 0);
  });

  test("more queue pairs than the device's max_virtqueue_pairs: NEGOTIATION before any queue starts", async () => {
    const dev = await startDevice(NET_DEVICE, ["--mode", "reflect", "--pairs", "2"]);
    const guest = new Guest();
    try {
      const device = await guest.addDevice({ socketPath: dev.socket });
      await assert.rejects(
        NetDriver.attach(device, { queuePairs: 3 }),
        (e: unknown) => isFrontendError(e) && e.code === "NEGOTIATION" && /3 queue pairs, the device has 2/.test(e.message),
      );
      assert.equal(device.ackedFeatures, undefined, "nothing was set up");
    } finally {
      await guest.close();
    }
  });

  test("a negative or infinite pollMicros: BAD_ARGUMENT before any queue starts", async () => {
    const dev = await startDevice(NET_DEVICE, ["--mode", "reflect"]);
    const guest = new Guest();
    try {
      const device = await guest.addDevice({ socketPath: dev.socket });
      for (const pollMicros of [-1, Number.POSITIVE_INFINITY])
        await assert.rejects(NetDriver.attach(device, { pollMicros }), (e: unknown) => isFrontendError(e) && e.code === "BAD_ARGUMENT");
      assert.equal(device.ackedFeatures, undefined, "nothing was set up");
    } finally {
      await guest.close();
    }
  });

  test("sink counts exactly the frames the device generated (not ours: foreign, none corrupt)", async () => {
    const dev = await startDevice(NET_DEVICE, ["--mode", "gen", "--count", "1000", "--size", "64"]);
    const r = await cli("net", "sink", "--socket", dev.socket, "--seconds", "2", "--json");
    assert.equal(r.code, 0, r.stderr);
    const s = JSON.parse(r.stdout) as Summary;
    assert.equal(s.rxFrames, 1000);
    assert.equal(s.foreign, 1000);
    assert.equal(s.corrupt, 0);
    assert.equal(s.txFrames, 0);
  });

  test("sink takes 5000-byte frames merged from three 2048-byte receive buffers (MRG_RXBUF, num_buffers 3), whole", async () => {
    const dev = await startDevice(NET_DEVICE, ["--mode", "gen", "--count", "200", "--size", "5000"]);
    const r = await cli("net", "sink", "--socket", dev.socket, "--seconds", "2", "--json");
    assert.equal(r.code, 0, r.stderr);
    const s = JSON.parse(r.stdout) as Summary & { readonly rxBytes: number; readonly mergeable: boolean };
    assert.equal(s.mergeable, true);
    assert.equal(s.rxFrames, 200);
    assert.equal(s.rxBytes, 200 * 5000);
  });

  test("burstInPlace: frames written into the transmit buffers reach the device whole; a length beyond maxFrame is BAD_ARGUMENT and stops the burst", async () => {
    const dev = await startDevice(NET_DEVICE, ["--mode", "reflect"]);
    const guest = new Guest();
    try {
      const frames = new UdpFrames(64, Uint8Array.of(2, 0, 0, 0, 0, 1), Uint8Array.of(2, 0, 0, 0, 0, 2));
      let ok = 0;
      let bad = 0;
      const net = await NetDriver.attach(await guest.addDevice({ socketPath: dev.socket }), {
        onFrames: (batch) => {
          for (let i = 0; i < batch.count; i++) {
            if (frames.classify(batch.buffers[i] as Uint8Array, batch.offsets[i] as number, batch.lengths[i] as number) === "ok") ok++;
            else bad++;
          }
        },
      });
      let seq = 0;
      while (seq < 2000) {
        await net.txReady();
        const base = seq;
        seq += net.burstInPlace(Math.min(64, 2000 - seq), (buf, off, i) => frames.writeTo(buf, off, base + i));
      }
      // What the reflector did not drop (our receive ring full) comes back intact.
      while (net.txFree() < 256) await new Promise((r) => setTimeout(r, 5));
      assert.ok(ok > 0 && ok <= 2000, `back ${ok}`);
      assert.equal(bad, 0, "none corrupt");
      assert.throws(
        () => net.burstInPlace(3, (buf, off, i) => (i === 1 ? 1515 : frames.writeTo(buf, off, i))),
        (e: unknown) => isFrontendError(e) && e.code === "BAD_ARGUMENT",
      );
      // Every transmit buffer back: the one frame before the bad one was sent, nothing after it.
      while (net.txFree() < 256) await new Promise((r) => setTimeout(r, 5));
      assert.equal(net.counters.txFrames, 2001);
    } finally {
      await guest.close();
    }
    const stats = await finalStats(dev.proc);
    assert.equal(stats.received, 2001);
  });

  test("onFrames: 1000 generated 64-byte frames and 100 merged 5000-byte ones arrive a round at a time, each entry in range, none twice", async () => {
    for (const [count, size] of [
      [1000, 64],
      [100, 5000],
    ] as const) {
      const dev = await startDevice(NET_DEVICE, ["--mode", "gen", "--count", String(count), "--size", String(size)]);
      const guest = new Guest();
      try {
        let frames = 0;
        let bytes = 0;
        let rounds = 0;
        let resolve!: () => void; // Node 20 has no Promise.withResolvers
        const all = new Promise<void>((r) => (resolve = r));
        await NetDriver.attach(await guest.addDevice({ socketPath: dev.socket }), {
          onFrame: () => assert.fail("onFrame called while onFrames is set"),
          onFrames: (batch, pair) => {
            rounds++;
            assert.equal(pair, 0);
            assert.ok(batch.count >= 1);
            const seen = new Set<string>();
            for (let i = 0; i < batch.count; i++) {
              const buf = batch.buffers[i] as Uint8Array;
              const off = batch.offsets[i] as number;
              const len = batch.lengths[i] as number;
              assert.ok(off >= 0 && off + len <= buf.byteLength, `frame ${i} inside its buffer`);
              const key = `${buf.byteOffset}:${off}`;
              assert.ok(size > 2048 || !seen.has(key), "no receive buffer twice in one round");
              seen.add(key);
              frames++;
              bytes += len;
            }
            if (frames === count) resolve();
          },
        });
        await all;
        assert.equal(frames, count);
        assert.equal(bytes, count * size);
        assert.ok(rounds <= frames);
      } finally {
        await guest.close();
      }
    }
  });

  test("echo sends every frame back: the device receives what it generated, less echo's counted drops", async () => {
    const dev = await startDevice(NET_DEVICE, ["--mode", "gen", "--count", "500", "--size", "100", "--stats"]);
    const r = await cli("net", "echo", "--socket", dev.socket, "--seconds", "2", "--json");
    assert.equal(r.code, 0, r.stderr);
    const s = JSON.parse(r.stdout) as Summary;
    assert.equal(s.rxFrames, 500);
    assert.equal(s.txFrames + s.drops, 500);
    const stats = await finalStats(dev.proc);
    assert.equal(stats.received, s.txFrames);
  });
});

describe("a hostile device's receive format", { timeout: 60_000 }, () => {
  const cases = [
    ["long", /used 1048576 bytes of a 2048-byte buffer/],
    ["short", /used 6 bytes, less than the 12-byte header/],
    ["zero-buffers", /num_buffers 0 /],
    ["too-many-buffers", /num_buffers 4096 /],
  ] as const;
  for (const [mode, message] of cases) {
    test(`${mode}: the driver fails with PROTOCOL, delivers nothing, and the process stays up`, async () => {
      const dev = await startDevice(HOSTILE, ["--mode", mode]);
      const guest = new Guest();
      try {
        const net = await NetDriver.attach(await guest.addDevice({ socketPath: dev.socket }));
        let frames = 0;
        net.onFrame(() => frames++);
        const e = await net.failed;
        assert.ok(isFrontendError(e));
        assert.equal(e.code, "PROTOCOL");
        assert.match(e.message, message);
        assert.equal(frames, 0);
        assert.throws(
          () => net.send(new Uint8Array(60)),
          (x: unknown) => isFrontendError(x) && x.code === "PROTOCOL",
        );
      } finally {
        await guest.close();
      }
    });
  }
});
