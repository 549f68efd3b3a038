/**
 * `vhost-user-device blk --workload SECONDS`: a verifying load a back-end developer can leave
 * running against a back-end, and restart the back-end under (`--reconnect`). It writes patterns
 * to 4 KiB blocks, reads written blocks back and compares every byte, prints a progress line each
 * second and a summary, and fails (exit 1) on any mismatch or failed request.
 */
import { BlkDriver, Guest, type DeviceOptions, type ReconnectEvent } from "@vhostkit/frontend";
import { json } from "../output.js";

/** What the workload is run with. */
export interface WorkloadOptions {
  /** Duration in seconds. */
  readonly seconds: number;
  /** Requests in flight (queue depth). */
  readonly qd: number;
  /** Fraction of requests that are writes, 0..1 (a block is written before it is ever read). */
  readonly writeRatio: number;
  /** Reconnect to a restarted back-end instead of failing. */
  readonly reconnect: boolean;
  /** Most of the disk exercised, bytes (from sector 0). */
  readonly spanBytes: number;
  /** Print JSON lines instead of text. */
  readonly json: boolean;
}

/** The outcome of a run (the summary). */
export interface WorkloadSummary {
  readonly seconds: number;
  /** Requests completed, reads and writes. */
  readonly requests: number;
  readonly writes: number;
  /** Reads of written blocks, every byte compared. */
  readonly verifiedReads: number;
  /** Distinct blocks verified by the final pass. */
  readonly verifiedBlocks: number;
  readonly mismatches: number;
  /** Requests that completed with an error (or failed with the device). */
  readonly errors: number;
  readonly reconnects: number;
  readonly iops: number;
  /**
   * Where the ring stands by the driver's count once every request completed (split: the chains it
   * made available, mod 2^16; packed: both positions with their wrap counters)...
   */
  readonly driverBase: number;
  /** ...and what the back-end reported at the end (GET_VRING_BASE): equal when each chain was consumed once. */
  readonly deviceBase: number | undefined;
}

/** A failed run (exit code 1). */
export class WorkloadFailed extends Error {}

const BLOCK = 4096;
const SECTORS_PER_BLOCK = BigInt(BLOCK / 512);

/** The bytes generation `gen` (>= 1) of `block` holds: a xorshift stream seeded by both. */
export function pattern(block: number, gen: number, out: Uint8Array = new Uint8Array(BLOCK)): Uint8Array {
  const words = new Uint32Array(out.buffer, out.byteOffset, BLOCK / 4);
  let x = (Math.imul(block + 1, 0x9e3779b1) ^ Math.imul(gen, 0x85ebca6b) ^ 0x1234567) >>> 0 || 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x >>> 0;
  }
  return out;
}

/**
 * Runs the workload on the device `device` opens, writing lines with `say`.
 * @throws WorkloadFailed after the summary when a block mismatched or a request failed.
 */
export async function runWorkload(device: DeviceOptions, o: WorkloadOptions, say: (line: string) => void): Promise<WorkloadSummary> {
  const guest = new Guest({ ramSize: BigInt(Math.max(64 << 20, o.qd * BLOCK * 4 + (8 << 20))) });
  try {
    const dev = await guest.addDevice({ ...device, ...(o.reconnect ? { reconnect: { initialDelayMs: 20, maxDelayMs: 500, attempts: 2400 } } : {}) });
    dev.onReconnect((e: ReconnectEvent) =>
      say(
        o.json
          ? JSON.stringify({
              event: "reconnected",
              count: e.count,
              attempts: e.attempts,
              downtimeMs: Math.round(e.downtimeMs),
              inflight: e.inflight,
              outstanding: e.outstanding,
            })
          : `reconnected #${e.count} after ${Math.round(e.downtimeMs)} ms (${e.attempts} attempts, inflight ${e.inflight ? "on" : "off"}, ${e.outstanding} requests outstanding)`,
      ),
    );
    const blk = await BlkDriver.attach(dev, { queueSize: Math.min(1024, 2 ** Math.ceil(Math.log2(Math.max(8, o.qd * 3)))) });
    const capacity = Number(blk.config?.capacity ?? 0n) * 512;
    const blocks = Math.floor(Math.min(capacity, o.spanBytes) / BLOCK);
    if (blocks < o.qd) throw new WorkloadFailed(`the device has ${blocks} blocks of 4 KiB in the span, fewer than --qd ${o.qd}`);
    const gen = new Uint32Array(blocks); // 0: not written in this run
    const busy = new Uint8Array(blocks);
    const s = { requests: 0, writes: 0, verifiedReads: 0, mismatches: 0, errors: 0 };
    let last = 0;
    const started = performance.now();
    const deadline = started + o.seconds * 1000;
    const tick = setInterval(() => {
      const t = (performance.now() - started) / 1000;
      const line = {
        t: Math.round(t),
        iops: s.requests - last,
        requests: s.requests,
        verified: s.verifiedReads,
        mismatches: s.mismatches,
        reconnects: dev.reconnects,
      };
      last = s.requests;
      say(
        o.json
          ? JSON.stringify(line)
          : `${line.t}s  ${line.iops} IOPS  ${line.verified} blocks verified  ${line.mismatches} mismatches  ${line.reconnects} reconnects`,
      );
    }, 1000);
    const worker = async (): Promise<void> => {
      const expect = new Uint8Array(BLOCK);
      while (performance.now() < deadline && s.errors === 0) {
        let b = Math.floor(Math.random() * blocks);
        for (let k = 0; busy[b] === 1 && k < blocks; k++) b = (b + 1) % blocks;
        busy[b] = 1;
        try {
          if ((gen[b] as number) === 0 || Math.random() < o.writeRatio) {
            const g = (gen[b] as number) + 1;
            await blk.write(BigInt(b) * SECTORS_PER_BLOCK, pattern(b, g));
            gen[b] = g;
            s.writes++;
          } else {
            const got = await blk.read(BigInt(b) * SECTORS_PER_BLOCK, BLOCK / 512);
            if (equal(got, pattern(b, gen[b] as number, expect))) s.verifiedReads++;
            else s.mismatches++;
          }
          s.requests++;
        } catch (err) {
          s.errors++;
          say(`error: block ${b}: ${err instanceof Error ? err.message : String(err)}`);
        } finally {
          busy[b] = 0;
        }
      }
    };
    await Promise.all(Array.from({ length: o.qd }, worker));
    clearInterval(tick);
    // Final pass: every written block once more.
    let verifiedBlocks = 0;
    const expect = new Uint8Array(BLOCK);
    for (let b = 0; b < blocks && s.errors === 0; b++) {
      if ((gen[b] as number) === 0) continue;
      const got = await blk.read(BigInt(b) * SECTORS_PER_BLOCK, BLOCK / 512);
      if (equal(got, pattern(b, gen[b] as number, expect))) verifiedBlocks++;
      else s.mismatches++;
      s.requests++;
    }
    const seconds = (performance.now() - started) / 1000;
    const driverBase = blk.queue.vringBase;
    const deviceBase = dev.failed === undefined ? (await dev.stop()).get(0) : undefined;
    const summary: WorkloadSummary = {
      seconds,
      ...s,
      verifiedBlocks,
      reconnects: dev.reconnects,
      iops: Math.round(s.requests / seconds),
      driverBase,
      deviceBase,
    };
    say(o.json ? json({ summary }) : summaryText(summary));
    if (s.mismatches > 0 || s.errors > 0) throw new WorkloadFailed(`${s.mismatches} blocks mismatched, ${s.errors} requests failed`);
    if (deviceBase !== undefined && deviceBase !== driverBase)
      throw new WorkloadFailed(`the back-end's vring base is 0x${deviceBase.toString(16)}, the driver's 0x${driverBase.toString(16)}`);
    return summary;
  } finally {
    await guest.close();
  }
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}

function summaryText(s: WorkloadSummary): string {
  return [
    `summary: ${s.requests} requests in ${s.seconds.toFixed(1)} s (${s.iops} IOPS), ${s.writes} writes`,
    `  verified: ${s.verifiedReads} reads during the run, ${s.verifiedBlocks} blocks in the final pass; ${s.mismatches} mismatches, ${s.errors} failed requests`,
    `  reconnects: ${s.reconnects}; vring base: driver ${s.driverBase}, back-end ${s.deviceBase ?? "-"}`,
  ].join("\n");
}
