/**
 * One vhost-user frame as a person (or a JSON reader) sees it: request name, header flags by name,
 * payload fields decoded with `@vhostkit/wire` in a dialect, or the reason they could not be. Never
 * throws: a frame from a hostile peer is described, not trusted. Used by `trace` and `decode`.
 */
import {
  decodeHeader,
  decodeMessage,
  decodeReply,
  HEADER_SIZE,
  HeaderFlag,
  isReply,
  requestName,
  tryMessageSpec,
  type Channel,
  type Dialect,
} from "@vhostkit/wire";

/** Longest byte field shown in full; longer ones are shown by length and their first bytes. */
const MAX_SHOWN_BYTES = 64;

/** A described frame. `value` is JSON-safe (u64 as `0x` hex strings, byte fields as hex). */
export interface FrameDescription {
  /** Request name in the dialect (for a reply: the request answered), or `UNKNOWN(0x..)`. */
  readonly name: string;
  /** Request id from the header (u32). */
  readonly request: number;
  /** True for a reply (REPLY flag). */
  readonly reply: boolean;
  /** Header flags (u32) and their names (`REPLY`, `NEED_REPLY`, `VERSION_1`, unknown bits as `0x..`). */
  readonly flags: number;
  readonly flagNames: readonly string[];
  /** Payload size from the header, bytes. */
  readonly size: number;
  /** Decoded payload fields, when the frame decodes. */
  readonly value?: unknown;
  /** Why the payload could not be decoded (the frame is still described). */
  readonly error?: string;
  /** What the frame means beyond its fields, e.g. `zero-size reply: refused`. */
  readonly note?: string;
}

/** Names of the set header flags: the version field as `VERSION_1`, then REPLY and NEED_REPLY, then unknown bits. */
export function headerFlagNames(flags: number): string[] {
  const out: string[] = [];
  const version = flags & HeaderFlag.VERSION_MASK;
  if (version !== 0) out.push(`VERSION_${version}`);
  if ((flags & HeaderFlag.REPLY) !== 0) out.push("REPLY");
  if ((flags & HeaderFlag.NEED_REPLY) !== 0) out.push("NEED_REPLY");
  const rest = flags & ~(HeaderFlag.VERSION_MASK | HeaderFlag.REPLY | HeaderFlag.NEED_REPLY);
  if (rest !== 0) out.push(`0x${(rest >>> 0).toString(16)}`);
  return out;
}

/** `v` with every bigint as `0x` hex, byte arrays as hex (long ones shortened), recursively. */
export function displayValue(v: unknown): unknown {
  if (typeof v === "bigint") return `0x${v.toString(16)}`;
  if (v instanceof Uint8Array) {
    const hex = Buffer.from(v.buffer, v.byteOffset, Math.min(v.byteLength, MAX_SHOWN_BYTES)).toString("hex");
    return v.byteLength <= MAX_SHOWN_BYTES ? hex : { bytes: v.byteLength, head: hex };
  }
  if (Array.isArray(v)) return v.map(displayValue);
  if (v !== null && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, displayValue(x)]));
  return v;
}

/** Name of `request` on `channel` in `dialect` (dialect-specific ids such as crosvm's 1000 included). */
export function nameIn(channel: Channel, request: number, dialect: Dialect): string {
  return tryMessageSpec(channel, request, dialect)?.name ?? requestName(channel, request);
}

/**
 * Describes `frame` (header and payload) sent on `channel` — `"frontend"` for the main socket,
 * `"backend"` for the back-end channel, replies included — in `dialect`.
 */
export function describeFrame(channel: Channel, frame: Uint8Array, dialect: Dialect): FrameDescription {
  if (frame.byteLength < HEADER_SIZE)
    return { name: "(truncated)", request: -1, reply: false, flags: 0, flagNames: [], size: 0, error: `frame of ${frame.byteLength} bytes has no header` };
  let header;
  try {
    header = decodeHeader(frame);
  } catch (err) {
    const v = new DataView(frame.buffer, frame.byteOffset, HEADER_SIZE);
    const request = v.getUint32(0, true);
    const flags = v.getUint32(4, true);
    return {
      name: nameIn(channel, request, dialect),
      request,
      reply: (flags & HeaderFlag.REPLY) !== 0,
      flags,
      flagNames: headerFlagNames(flags),
      size: v.getUint32(8, true),
      error: err instanceof Error ? err.message : String(err),
    };
  }
  const reply = isReply(header);
  const base = {
    name: nameIn(channel, header.request, dialect),
    request: header.request,
    reply,
    flags: header.flags,
    flagNames: headerFlagNames(header.flags),
    size: header.size,
  };
  // A zero-size reply to a request whose reply has a body is how libvhost-user and rust-vmm refuse
  // (GET_CONFIG too large, GET_SHMEM_CONFIG unknown): docs/protocol.md#reply-rules.
  if (reply && header.size === 0 && frame.byteLength === HEADER_SIZE) return { ...base, value: null, note: "zero-size reply: refused" };
  try {
    const d = reply
      ? decodeReply(channel, frame, dialect, { maxPayload: frame.byteLength })
      : decodeMessage(channel, frame, dialect, { maxPayload: frame.byteLength });
    return { ...base, name: d.name, value: displayValue(d.value ?? null) };
  } catch (err) {
    return { ...base, error: err instanceof Error ? err.message : String(err) };
  }
}
