/**
 * Counting for `vhost-user-device net`: frames checked on arrival, a progress line each second
 * (Mpps and Gbit/s both ways, drops, corrupted frames) and the summary.
 */
import type { NetCounters } from "@vhostkit/frontend";
import type { FrameCheck } from "./udp-frames.js";

/** The summary of one `net` run (`--json` prints it as is). */
export interface NetSummary {
  readonly mode: "gen" | "sink" | "echo";
  readonly seconds: number;
  readonly frameSize: number | null;
  readonly queuePairs: number;
  /** Frames the device took from the transmit queues (completed), and their bytes. */
  readonly txFrames: number;
  readonly txBytes: number;
  /** Frames received, and their bytes. */
  readonly rxFrames: number;
  readonly rxBytes: number;
  readonly txMpps: number;
  readonly rxMpps: number;
  /** Frame bits per second (Ethernet header to the end of the payload; no preamble, FCS or gap). */
  readonly txGbps: number;
  readonly rxGbps: number;
  /** gen: frames sent that did not come back intact (sent − ok); sink: 0; echo: frames not sent back (no free buffer). */
  readonly drops: number;
  /** Received frames of ours whose bytes (after the MAC addresses) differ from what was sent. */
  readonly corrupt: number;
  /** Received frames that are not test frames of this size. */
  readonly foreign: number;
  /** gen: frames sent. */
  readonly sent: number;
  /** Test frames received intact. */
  readonly ok: number;
  readonly mac: string | null;
  readonly mergeable: boolean;
  /** The driver's failure (`CODE: message`), or null. */
  readonly failure: string | null;
}

const mpps = (frames: number, s: number) => (s > 0 ? frames / s / 1e6 : 0);
const gbps = (bytes: number, s: number) => (s > 0 ? (bytes * 8) / s / 1e9 : 0);

/** Counts frames and prints progress. */
export class NetMeter {
  readonly #mode: NetSummary["mode"];
  readonly #size: number;
  readonly #pairs: number;
  readonly #print: (line: string) => void;
  #sent = 0;
  #ok = 0;
  #corrupt = 0;
  #foreign = 0;
  /** echo: frames that found no free transmit buffer. */
  dropped = 0;
  #t0 = 0;
  #t1 = 0;
  #timer: ReturnType<typeof setInterval> | undefined;

  constructor(mode: NetSummary["mode"], size: number, pairs: number, print: (line: string) => void) {
    this.#mode = mode;
    this.#size = size;
    this.#pairs = pairs;
    this.#print = print;
  }

  /** Test frames received intact so far. */
  get received(): number {
    return this.#ok;
  }

  /** gen: the number of frames sent so far. */
  sent(n: number): void {
    this.#sent = n;
  }

  /** One received frame and its check. */
  frame(_len: number, result: FrameCheck, _seq: number): void {
    if (result === "ok") this.#ok++;
    else if (result === "corrupt") this.#corrupt++;
    else this.#foreign++;
  }

  #drops(): number {
    return this.#mode === "gen" ? Math.max(0, this.#sent - this.#ok - this.#corrupt) : this.dropped;
  }

  /** Starts the progress line (every second, from the driver's counters). */
  start(counters: () => NetCounters): void {
    this.#t0 = performance.now();
    let last = { ...counters() };
    let lastAt = this.#t0;
    this.#timer = setInterval(() => {
      const now = performance.now();
      const c = counters();
      const s = (now - lastAt) / 1000;
      const t = ((now - this.#t0) / 1000).toFixed(1);
      this.#print(
        `${t}s  tx ${mpps(c.txFrames - last.txFrames, s).toFixed(3)} Mpps ${gbps(c.txBytes - last.txBytes, s).toFixed(3)} Gbit/s  ` +
          `rx ${mpps(c.rxFrames - last.rxFrames, s).toFixed(3)} Mpps ${gbps(c.rxBytes - last.rxBytes, s).toFixed(3)} Gbit/s  ` +
          `drops ${this.#drops()}  corrupt ${this.#corrupt}`,
      );
      last = { ...c };
      lastAt = now;
    }, 1000);
  }

  /** Stops the progress line. */
  stop(): void {
    this.#t1 = performance.now();
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** The summary from the driver's final counters. */
  summary(c: NetCounters, extra: Pick<NetSummary, "mac" | "mergeable" | "failure">): NetSummary {
    const s = ((this.#t1 || performance.now()) - this.#t0) / 1000;
    return {
      mode: this.#mode,
      seconds: Number(s.toFixed(3)),
      frameSize: this.#mode === "gen" ? this.#size : null,
      queuePairs: this.#pairs,
      txFrames: c.txFrames,
      txBytes: c.txBytes,
      rxFrames: c.rxFrames,
      rxBytes: c.rxBytes,
      txMpps: Number(mpps(c.txFrames, s).toFixed(4)),
      rxMpps: Number(mpps(c.rxFrames, s).toFixed(4)),
      txGbps: Number(gbps(c.txBytes, s).toFixed(4)),
      rxGbps: Number(gbps(c.rxBytes, s).toFixed(4)),
      drops: this.#drops(),
      corrupt: this.#corrupt,
      foreign: this.#foreign,
      sent: this.#sent,
      ok: this.#ok,
      ...extra,
    };
  }

  /** The summary as text lines. */
  static summaryText(r: NetSummary): string {
    return [
      `net ${r.mode}: ${r.seconds} s, ${r.queuePairs} queue pair(s)${r.frameSize === null ? "" : `, ${r.frameSize}-byte frames`}, MAC ${r.mac ?? "(none)"}, mergeable rx ${r.mergeable ? "yes" : "no"}`,
      `tx ${r.txFrames} frames (${r.txMpps} Mpps, ${r.txGbps} Gbit/s)  rx ${r.rxFrames} frames (${r.rxMpps} Mpps, ${r.rxGbps} Gbit/s)`,
      `${r.mode === "gen" ? `sent ${r.sent}, back intact ${r.ok}, ` : ""}drops ${r.drops}, corrupt ${r.corrupt}, foreign ${r.foreign}${r.failure === null ? "" : `\nfailed: ${r.failure}`}`,
    ].join("\n");
  }
}
