/**
 * `vhost-user-device net`: traffic on a vhost-user network port. `gen` sends test UDP frames and
 * counts those that come back (a reflecting port), `sink` counts what arrives, `echo` sends every
 * frame back with its MAC addresses swapped. A progress line each second on stderr, a summary on
 * stdout (`--json`: one object).
 */
import { Command } from "commander";
import { NetDriver, type NetFramesCallback } from "@vhostkit/frontend";
import { withDevice } from "../device-session.js";
import { addCommon, deviceOptions, parseInteger, UsageError, type CommonFlags } from "../options.js";
import { macText, swapMacs, UdpFrames } from "../net/udp-frames.js";
import { NetMeter, type NetSummary } from "../net/meter.js";

interface NetFlags extends CommonFlags {
  readonly seconds?: string;
  readonly queues: string;
  readonly size?: string;
  readonly rate?: string;
}

const OUR_MAC = Uint8Array.of(0x02, 0x76, 0x68, 0x6b, 0x00, 0x01);
/** Frames per burst when no rate is set is whatever the ring has free; with a rate, at least this many. */
const BURST = 32;

const tick = () => new Promise<void>((r) => setImmediate(r));

/** Runs until `seconds` passed (forever when undefined) or SIGINT/SIGTERM. */
function deadline(seconds: number | undefined): { readonly done: () => boolean; readonly stop: () => void; readonly release: () => void } {
  let stopped = false;
  const end = seconds === undefined ? Infinity : performance.now() + seconds * 1000;
  const onSignal = () => (stopped = true);
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  return {
    done: () => stopped || performance.now() >= end,
    stop: onSignal,
    release: () => {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
    },
  };
}

async function generate(net: NetDriver, meter: NetMeter, frames: UdpFrames, rate: number | undefined, seconds: number): Promise<void> {
  const run = deadline(seconds);
  const pairs = net.queuePairs;
  let seq = 0;
  let tokens = 0;
  let last = performance.now();
  try {
    while (!run.done() && net.failure === undefined) {
      let budget = Infinity;
      if (rate !== undefined) {
        const now = performance.now();
        tokens = Math.min(tokens + ((now - last) * rate) / 1000, Math.max(BURST, rate / 100));
        last = now;
        budget = Math.floor(tokens);
      }
      for (let p = 0; p < pairs && budget > 0; p++) {
        const n = Math.min(budget, net.txFree(p));
        // Written in place into the standing transmit buffers (after a buffer's first frame only
        // the sequence number and checksum change). One avail index update per burst, at most one kick.
        const base = seq;
        const sent = net.burstInPlace(n, (buf, off, i) => frames.writeTo(buf, off, base + i), p);
        seq += sent;
        budget -= sent;
        tokens -= sent;
      }
      meter.sent(seq);
      // Full: wait for a completion; else let the event loop run (received frames, timers).
      if (net.txFree(0) === 0) await net.txReady(0);
      else await tick();
    }
    // What is still in flight comes back within a moment; then count it lost.
    const drainEnd = performance.now() + 500;
    while (performance.now() < drainEnd && meter.received < seq && net.failure === undefined) await new Promise((r) => setTimeout(r, 10));
  } finally {
    run.release();
  }
}

async function passive(net: NetDriver, seconds: number | undefined): Promise<void> {
  const run = deadline(seconds);
  try {
    while (!run.done() && net.failure === undefined) await new Promise((r) => setTimeout(r, 20));
  } finally {
    run.release();
  }
}

/** Builds the `net` subcommand with `gen`, `sink` and `echo`. */
export function netCommand(): Command {
  const cmd = new Command("net").description("generate, sink or reflect Ethernet frames on a vhost-user network port (virtio-net)");
  const common = (c: Command) =>
    addCommon(c)
      .option("--queues <n>", "queue pairs (more than 1 needs MQ)", "1")
      .option("--seconds <s>", "run for S seconds (gen: default 5; sink, echo: until SIGINT)");
  cmd.addCommand(
    common(new Command("gen").description("send UDP test frames; count those that come back, corrupted ones, and drops"))
      .option("--size <n>", "frame length in bytes without FCS (60 to 1514)", "64")
      .option("--rate <pps>", "frames per second (default: as fast as the port takes them)")
      .action((flags: NetFlags) => runNet("gen", flags)),
  );
  cmd.addCommand(common(new Command("sink").description("count (and check) the frames that arrive")).action((flags: NetFlags) => runNet("sink", flags)));
  cmd.addCommand(
    common(new Command("echo").description("send every frame back with its MAC addresses swapped")).action((flags: NetFlags) => runNet("echo", flags)),
  );
  return cmd;
}

async function runNet(mode: "gen" | "sink" | "echo", flags: NetFlags): Promise<void> {
  const queuePairs = parseInteger(flags.queues, "--queues", 1);
  const seconds = flags.seconds === undefined ? (mode === "gen" ? 5 : undefined) : parseInteger(flags.seconds, "--seconds", 1);
  const size = parseInteger(flags.size ?? "64", "--size", 0);
  const rate = flags.rate === undefined ? undefined : parseInteger(flags.rate, "--rate", 1);
  let frames: UdpFrames;
  try {
    frames = new UdpFrames(size, OUR_MAC, Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0xff, 0xff));
  } catch (e) {
    throw new UsageError(`--size: ${(e as Error).message}`);
  }
  const summary = await withDevice(deviceOptions(flags), async (device): Promise<NetSummary> => {
    const meter = new NetMeter(mode, size, queuePairs, (line) => process.stderr.write(`${line}\n`));
    // Installed before the receive buffers are posted: a device may fill them at once. One call
    // per round of completions, the frames checked in place. The check ignores MAC addresses, so
    // gen's frames (built below with the device's MAC) pass it too.
    const onFrames: NetFramesCallback = (batch, pair, driver) => {
      for (let i = 0; i < batch.count; i++) {
        const buf = batch.buffers[i] as Uint8Array;
        const off = batch.offsets[i] as number;
        const len = batch.lengths[i] as number;
        if (mode === "echo") {
          const copy = buf.slice(off, off + len);
          swapMacs(copy);
          if (!driver.send(copy, pair)) meter.dropped++;
          meter.frame(len, "ok", -1);
        } else {
          const result = frames.classify(buf, off, len);
          meter.frame(len, result, result === "foreign" ? -1 : frames.lastSeq);
        }
      }
    };
    const net = await NetDriver.attach(device, { queuePairs, onFrames });
    const dst = net.mac ?? Uint8Array.of(0x02, 0x76, 0x68, 0x6b, 0x00, 0x02);
    if (mode === "gen") frames = new UdpFrames(size, OUR_MAC, dst);
    meter.start(() => net.counters);
    try {
      if (mode === "gen") await generate(net, meter, frames, rate, seconds as number);
      else await passive(net, seconds);
    } finally {
      meter.stop();
    }
    net.close();
    const failure = net.failure;
    return meter.summary(net.counters, {
      mac: net.mac === undefined ? null : macText(net.mac),
      mergeable: net.mergeable,
      failure: failure === undefined ? null : `${failure.code}: ${failure.message}`,
    });
  });
  if (flags.json === true) process.stdout.write(`${JSON.stringify(summary)}\n`);
  else process.stdout.write(`${NetMeter.summaryText(summary)}\n`);
  if (summary.failure !== null) throw new Error(summary.failure);
}
