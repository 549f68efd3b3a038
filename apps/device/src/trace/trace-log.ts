/**
 * What `vhost-user-device trace` records: one {@link TraceRecord} per relayed message (a text line,
 * or one JSON object a line with `--json`), the request/reply latencies, and the summary at the end.
 */
import { table } from "../output.js";
import type { FrameDescription } from "./describe-frame.js";

/** One relayed message. With `--json` each is printed as one JSON object on its own line. */
export interface TraceRecord extends FrameDescription {
  /** Milliseconds since the proxy accepted the front-end. */
  readonly t: number;
  /** `main` (the vhost-user socket) or `backend` (the back-end channel of SET_BACKEND_REQ_FD). */
  readonly channel: "main" | "backend";
  /** Who sent it. */
  readonly from: "frontend" | "backend";
  /** File descriptors that came with it (each forwarded, then closed here). */
  readonly fds: number;
  /** For a reply: milliseconds since the request it answers was relayed. */
  readonly latencyMs?: number;
}

/** Per request name and channel: how many requests and replies went by. */
export interface TraceCount {
  readonly channel: "main" | "backend";
  readonly name: string;
  readonly requests: number;
  readonly replies: number;
  readonly fds: number;
}

/** One answered request, for the slowest list. */
export interface TraceLatency {
  readonly channel: "main" | "backend";
  readonly name: string;
  /** When the reply came, ms since the start. */
  readonly t: number;
  readonly latencyMs: number;
}

/** The summary printed when the session ends (`{"summary": ...}` as the last JSON line). */
export interface TraceSummary {
  readonly durationMs: number;
  readonly messages: number;
  readonly payloadBytes: number;
  readonly fds: number;
  /** Frames that did not decode (forwarded all the same). */
  readonly undecoded: number;
  readonly counts: readonly TraceCount[];
  /** The five slowest request/reply round trips, slowest first. */
  readonly slowest: readonly TraceLatency[];
  /** Why the session ended. */
  readonly end: string;
}

const round = (ms: number): number => Math.round(ms * 1000) / 1000;

/** Accumulates records into a {@link TraceSummary}. */
export class TraceStats {
  readonly #counts = new Map<string, { channel: "main" | "backend"; name: string; requests: number; replies: number; fds: number }>();
  readonly #latencies: TraceLatency[] = [];
  #messages = 0;
  #bytes = 0;
  #fds = 0;
  #undecoded = 0;

  /** Counts `r`. */
  add(r: TraceRecord): void {
    this.#messages++;
    this.#bytes += r.size;
    this.#fds += r.fds;
    if (r.error !== undefined) this.#undecoded++;
    const key = `${r.channel} ${r.name}`;
    let c = this.#counts.get(key);
    if (c === undefined) this.#counts.set(key, (c = { channel: r.channel, name: r.name, requests: 0, replies: 0, fds: 0 }));
    if (r.reply) c.replies++;
    else c.requests++;
    c.fds += r.fds;
    if (r.latencyMs !== undefined) this.#latencies.push({ channel: r.channel, name: r.name, t: r.t, latencyMs: r.latencyMs });
  }

  /** The summary so far, ending for reason `end` after `durationMs`. */
  summary(durationMs: number, end: string): TraceSummary {
    return {
      durationMs: round(durationMs),
      messages: this.#messages,
      payloadBytes: this.#bytes,
      fds: this.#fds,
      undecoded: this.#undecoded,
      counts: [...this.#counts.values()].sort((a, b) =>
        a.channel === b.channel ? b.requests + b.replies - (a.requests + a.replies) : a.channel === "main" ? -1 : 1,
      ),
      slowest: [...this.#latencies].sort((a, b) => b.latencyMs - a.latencyMs).slice(0, 5),
      end,
    };
  }
}

/** One record as a text line: time, channel, direction, name, flags, size, fds, latency, fields. */
export function recordLine(r: TraceRecord): string {
  const arrow = r.from === "frontend" ? "F->B" : "B->F";
  const what = `${r.name}${r.reply ? " reply" : ""}`;
  const parts = [
    `${r.t.toFixed(3).padStart(10)} ms`,
    r.channel.padEnd(7),
    arrow,
    what.padEnd(28),
    `flags=0x${r.flags.toString(16)}(${r.flagNames.join("|")})`,
    `size=${r.size}`,
    `fds=${r.fds}`,
  ];
  if (r.latencyMs !== undefined) parts.push(`latency=${r.latencyMs.toFixed(3)}ms`);
  if (r.note !== undefined) parts.push(r.note);
  if (r.error !== undefined) parts.push(`undecoded: ${r.error}`);
  else if (r.value !== undefined && r.value !== null) parts.push(JSON.stringify(r.value));
  return parts.join("  ");
}

/** The summary as text: totals, counts per request, the slowest round trips. */
export function summaryText(s: TraceSummary): string {
  const lines = [
    "",
    `summary: ${s.messages} messages, ${s.payloadBytes} payload bytes, ${s.fds} fds in ${s.durationMs} ms${s.undecoded > 0 ? `, ${s.undecoded} not decoded` : ""}; ${s.end}`,
    table([
      ["  channel", "request", "requests", "replies", "fds"],
      ...s.counts.map((c) => [`  ${c.channel}`, c.name, String(c.requests), String(c.replies), String(c.fds)]),
    ]),
  ];
  if (s.slowest.length > 0)
    lines.push("slowest round trips", table(s.slowest.map((l) => [`  ${l.channel}`, l.name, `${l.latencyMs.toFixed(3)} ms`, `at ${l.t.toFixed(3)} ms`])));
  return lines.join("\n");
}
