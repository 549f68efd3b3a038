/**
 * DPDK 22.11's testpmd as the front-end (`net_virtio_user0`, the `dpdk` peer set, no hugepages)
 * against the vhostkit virtio-net example device (packages/backend/examples/net-device.mjs) as the
 * back-end, in DPDK's own vhost-user message order (docs/virtio-net.md#dpdks-front-end): frames
 * both ways with the counts matching on both sides, reflected frames coming back, and the two-port
 * switch carrying one testpmd's frames to another.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { LineProcess } from "./helpers/processes.js";
import { startTestpmd } from "./helpers/testpmd.js";

const NET_DEVICE = fileURLToPath(new URL("../../../packages/backend/examples/net-device.mjs", import.meta.url));

/** The device's counters of one port (its `stats {...}` lines). */
interface PortStats {
  readonly port: number;
  readonly received: number;
  readonly receivedBytes: number;
  readonly sent: number;
  readonly sentBytes: number;
  readonly dropped: number;
  readonly receivedByPair: number[];
}

/** The net device on `socket` (and `socket2`), in `mode`. */
async function netDevice(args: readonly string[]): Promise<LineProcess> {
  const dev = new LineProcess(process.execPath, [NET_DEVICE, "--events", ...args]);
  await dev.line("listening");
  return dev;
}

/** Stops the device (SIGTERM) and returns its final counters, port by port. */
async function finalStats(dev: LineProcess): Promise<PortStats[]> {
  assert.equal(await dev.stop(), 0, dev.stderr);
  const last = new Map<number, PortStats>();
  for (const l of dev.lines) if (l.startsWith("stats ")) last.set((JSON.parse(l.slice(6)) as PortStats).port, JSON.parse(l.slice(6)) as PortStats);
  assert.equal(dev.lines.filter((l) => /^event (queue-broken|rejected|dropped|device-error)/.test(l)).join("\n"), "", "no request refused, no queue broken");
  return [...last.values()].sort((a, b) => a.port - b.port);
}

const workDir = () => mkdtempSync(join(tmpdir(), "vhostkit-testpmd-net-"));

test("testpmd txonly -> vhostkit net device (sink): the device received exactly what testpmd transmitted", { timeout: 120_000 }, async () => {
  const dir = workDir();
  const socket = join(dir, "net.sock");
  const dev = await netDevice(["--socket", socket, "--mode", "sink"]);
  try {
    const pmd = await startTestpmd({ role: "virtio-user", socket, forwardMode: "txonly", txLength: 64 });
    try {
      await pmd.line(/TX-packets:\s*[1-9]\d{5,}/, 60_000); // 100000 frames and more on the way
    } finally {
      const counters = await pmd.stop();
      const [port] = await finalStats(dev);
      assert.ok(counters.txPackets >= 100_000, `testpmd transmitted ${counters.txPackets}`);
      assert.equal(port?.received, counters.txPackets, "frames: device received == testpmd TX-packets");
      assert.equal(port?.receivedBytes, counters.txPackets * 64, "64 bytes each");
    }
  } finally {
    await dev.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("vhostkit net device (gen) -> testpmd rxonly: testpmd received exactly the frames the device generated", { timeout: 120_000 }, async () => {
  const dir = workDir();
  const socket = join(dir, "net.sock");
  const count = 300_000;
  const dev = await netDevice(["--socket", socket, "--mode", "gen", "--count", String(count), "--size", "64", "--stats"]);
  try {
    const pmd = await startTestpmd({ role: "virtio-user", socket, forwardMode: "rxonly" });
    try {
      // Port counters (testpmd's periodic lines): the device starts filling the receive ring as soon
      // as it is enabled, before testpmd's forward statistics begin.
      const received = () => pmd.samples.at(-1)?.rxPackets ?? 0;
      await dev.line(`"sent":${count},`);
      while (received() < count) await new Promise((r) => setTimeout(r, 250)); // a poll for a condition, not a timed assertion
    } finally {
      await pmd.stop();
      const [port] = await finalStats(dev);
      assert.equal(port?.sent, count, "the device generated its count");
      assert.equal(pmd.samples.at(-1)?.rxPackets, count, "testpmd's port RX-packets == frames the device generated");
    }
  } finally {
    await dev.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("reflect, two queue pairs: testpmd macswap (--tx-first) gets its frames back from the device", { timeout: 120_000 }, async () => {
  const dir = workDir();
  const socket = join(dir, "net.sock");
  const dev = await netDevice(["--socket", socket, "--mode", "reflect", "--pairs", "2"]);
  try {
    // queues=2: the second pair is enabled after DRIVER_OK (docs/virtio-net.md#dpdks-front-end).
    const pmd = await startTestpmd({ role: "virtio-user", socket, forwardMode: "macswap", queues: 2, appArgs: ["--tx-first"] });
    try {
      await pmd.line(/RX-packets:\s*[1-9]\d{5,}/, 60_000);
    } finally {
      const counters = await pmd.stop();
      const [port] = await finalStats(dev);
      assert.ok(counters.rxPackets >= 100_000, `testpmd received ${counters.rxPackets}`);
      assert.equal(port?.received, counters.txPackets, "device received == testpmd TX-packets");
      assert.equal(port?.sent, port?.received - (port?.dropped ?? 0), "every frame reflected or counted as dropped");
      assert.ok(counters.rxPackets <= (port?.sent ?? 0), "testpmd received only frames the device sent");
      assert.ok(
        port?.receivedByPair.every((n) => n > 0),
        `both pairs carried frames: ${port?.receivedByPair}`,
      );
    }
  } finally {
    await dev.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("switch: one testpmd's frames reach the other through the device's two ports", { timeout: 120_000 }, async () => {
  const dir = workDir();
  const [a, b] = [join(dir, "a.sock"), join(dir, "b.sock")];
  const dev = await netDevice(["--socket", a, "--socket2", b, "--mode", "switch"]);
  try {
    const rx = await startTestpmd({ role: "virtio-user", socket: b, forwardMode: "rxonly", forwardCpu: 0 });
    try {
      const tx = await startTestpmd({ role: "virtio-user", socket: a, forwardMode: "txonly", txLength: 64, forwardCpu: 1 });
      let sent: Awaited<ReturnType<typeof tx.stop>>;
      try {
        await rx.line(/RX-packets:\s*[1-9]\d{5,}/, 60_000);
      } finally {
        sent = await tx.stop();
      }
      // What left port a's transmitq arrives at b (minus what found no receive buffer there): wait for b to drain.
      await rx.line(/Rx-pps:\s*0\b/, 30_000);
      const got = await rx.stop();
      const [pa, pb] = await finalStats(dev);
      assert.equal(pa?.received, sent.txPackets, "port a received what testpmd A transmitted");
      assert.equal(pa?.sent, got.rxPackets, "testpmd B received what port a delivered to port b");
      assert.equal((pa?.sent ?? 0) + (pa?.dropped ?? 0), pa?.received, "delivered or dropped, nothing else");
      assert.equal(pb?.received, 0);
    } finally {
      await rx.kill();
    }
  } finally {
    await dev.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
