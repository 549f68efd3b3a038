/**
 * Whole frames: header + payload, encoded in one allocation and decoded with the size checked
 * against the message table **before** the body is read (rust-vmm `check_request_size`).
 * @module
 */
import { ByteReader } from "./codec/byte-reader.js";
import { ByteWriter } from "./codec/byte-writer.js";
import type { PayloadCodec } from "./codec/payload-codec.js";
import type { Dialect } from "./dialect.js";
import { UPSTREAM } from "./dialect.js";
import { WireError } from "./errors.js";
import type { MessageHeader } from "./header.js";
import { HEADER_SIZE, HeaderFlag, isReply, readHeader } from "./header.js";
import { MAX_PAYLOAD_SIZE, MEM_RW_MAX_PAYLOAD } from "./limits.js";
import type { BackendReplyValue, BackendRequestValue, FrontendReplyValue, FrontendRequestValue, MessageSpec } from "./message-table.js";
import { tryMessageSpec, tryMessageSpecByName } from "./message-table.js";
import type { BackendRequestName, Channel, FrontendRequestName } from "./requests.js";
import { BackendRequest, FrontendRequest, requestName } from "./requests.js";

/** Size limits a receiver applies to frames (docs/protocol.md#payload-size-limits). */
export interface FrameLimits {
  /**
   * Largest payload in bytes accepted for ordinary messages; default {@link MAX_PAYLOAD_SIZE}
   * (4096, rust-vmm). vhostkit MEM_READ/MEM_WRITE on the back-end channel may always reach
   * {@link MEM_RW_MAX_PAYLOAD} (16 + 65536, docs/shmem.md#extension-rules, rule 6).
   */
  readonly maxPayload?: number;
  /** Postcopy mode: SET_MEM_TABLE / ADD_MEM_REG replies carry the table / region, not a u64. */
  readonly postcopy?: boolean;
}

/**
 * One decoded frame: `name` discriminates `value`'s type (`Values[name]`). Views inside `value`
 * borrow the frame's bytes.
 * @typeParam C - the channel; @typeParam Values - payload value type per request name.
 */
export type DecodedFrame<C extends Channel, Values> = {
  readonly [N in keyof Values]: {
    /** The channel the frame was decoded for. */
    readonly channel: C;
    /** Spec name of the request (for a reply: the request it answers). */
    readonly name: N;
    /** The validated header. */
    readonly header: MessageHeader;
    /** Decoded payload. */
    readonly value: Values[N];
  };
}[keyof Values];

/** A decoded front-end request. */
export type DecodedFrontendRequest = DecodedFrame<"frontend", { readonly [N in FrontendRequestName]: FrontendRequestValue<N> }>;
/** A decoded back-end request. */
export type DecodedBackendRequest = DecodedFrame<"backend", { readonly [N in BackendRequestName]: BackendRequestValue<N> }>;
/** A decoded reply to a front-end request (flags VERSION | REPLY). */
export type DecodedFrontendReply = DecodedFrame<"frontend", { readonly [N in FrontendRequestName]: FrontendReplyValue<N> }>;
/** A decoded reply to a back-end request (flags VERSION | REPLY). */
export type DecodedBackendReply = DecodedFrame<"backend", { readonly [N in BackendRequestName]: BackendReplyValue<N> }>;

function unknownRequest(channel: Channel, id: number, dialect: Dialect): WireError {
  return new WireError("UNKNOWN_REQUEST", `unknown ${channel} request id 0x${(id >>> 0).toString(16)} in dialect ${dialect.name}`, {
    request: requestName(channel, id),
    actual: id,
    offset: 0,
  });
}

function specById(channel: Channel, id: number, dialect: Dialect): MessageSpec {
  const spec = tryMessageSpec(channel, id, dialect);
  if (spec === undefined) throw unknownRequest(channel, id, dialect);
  return spec;
}

function specByName(channel: Channel, name: string, dialect: Dialect): MessageSpec {
  const spec = tryMessageSpecByName(channel, name, dialect);
  if (spec !== undefined) return spec;
  const id = channel === "frontend" ? (FrontendRequest as Record<string, number>)[name] : (BackendRequest as Record<string, number>)[name];
  if (id !== undefined) throw unknownRequest(channel, id, dialect);
  throw new WireError("UNKNOWN_REQUEST", `unknown ${channel} request name ${name}`, { request: name });
}

function replyCodec(spec: MessageSpec, postcopy: boolean | undefined): PayloadCodec<unknown> {
  return postcopy === true && spec.postcopyReply !== undefined ? spec.postcopyReply : spec.reply;
}

function payloadCap(spec: MessageSpec, maxPayload: number): number {
  const memRw = spec.channel === "backend" && (spec.id === BackendRequest.BACKEND_MEM_READ || spec.id === BackendRequest.BACKEND_MEM_WRITE);
  return memRw ? Math.max(maxPayload, MEM_RW_MAX_PAYLOAD) : maxPayload;
}

function checkPayloadSize(spec: MessageSpec, codec: PayloadCodec<unknown>, size: number, maxPayload: number): void {
  const cap = payloadCap(spec, maxPayload);
  if (size > cap) {
    throw new WireError("TOO_LARGE", `${spec.name}: payload 0x${size.toString(16)} bytes exceeds the cap 0x${cap.toString(16)}`, {
      request: spec.name,
      expected: cap,
      actual: size,
      offset: 8,
    });
  }
  if (codec.SIZE !== undefined ? size !== codec.SIZE : size < codec.minSize || size > codec.maxSize) {
    const expected = codec.SIZE ?? `${codec.minSize}..${codec.maxSize}`;
    throw new WireError("BAD_SIZE", `${spec.name}: payload 0x${size.toString(16)} bytes, ${codec.layout} needs ${expected}`, {
      request: spec.name,
      expected,
      actual: size,
      offset: 8,
    });
  }
}

/**
 * Check a received header's `size` before reading the body (for transports): the id must exist in
 * `dialect` on `channel`, the size must not exceed the cap and must fit the request's (or, when the
 * REPLY bit is set, the reply's) payload layout.
 * @returns the message table row, e.g. to check the fd count with `expectedFdCount`.
 * @throws WireError `UNKNOWN_REQUEST`, `TOO_LARGE`, `BAD_SIZE`.
 */
export function checkFrameSize(header: MessageHeader, channel: Channel, dialect: Dialect = UPSTREAM, limits: FrameLimits = {}): MessageSpec {
  const spec = specById(channel, header.request, dialect);
  const codec = isReply(header) ? replyCodec(spec, limits.postcopy) : spec.request;
  checkPayloadSize(spec, codec, header.size, limits.maxPayload ?? MAX_PAYLOAD_SIZE);
  return spec;
}

function encodeFrame(spec: MessageSpec, codec: PayloadCodec<unknown>, flags: number, value: unknown): Uint8Array {
  const size = codec.sizeOf(value);
  const out = new Uint8Array(HEADER_SIZE + size);
  const w = new ByteWriter(out, 0, spec.name);
  w.u32(spec.id);
  w.u32(flags);
  w.u32(size);
  codec.encode(w, value);
  if (w.pos !== out.byteLength) {
    throw new WireError("BAD_SIZE", `${spec.name}: encoder wrote 0x${(w.pos - HEADER_SIZE).toString(16)} of 0x${size.toString(16)} bytes`, {
      request: spec.name,
      expected: size,
      actual: w.pos - HEADER_SIZE,
    });
  }
  return out;
}

function checkRequestFlags(name: string, flags: number): void {
  if (!Number.isInteger(flags) || (flags & HeaderFlag.VERSION_MASK) !== HeaderFlag.VERSION || (flags & (HeaderFlag.RESERVED_MASK | HeaderFlag.REPLY)) !== 0) {
    throw new WireError("BAD_VALUE", `${name}: request flags 0x${(flags >>> 0).toString(16)} must be 0x1 or 0x9`, {
      request: name,
      expected: "0x1 or 0x9",
      actual: flags,
      offset: 4,
    });
  }
}

/**
 * Encode a request frame: 12-byte header + payload in one allocation (host order, little-endian).
 * @param flags - `HeaderFlag.VERSION`, optionally `| HeaderFlag.NEED_REPLY`.
 * @param dialect - the connection's dialect (default {@link UPSTREAM}); decides which SHMEM ids exist.
 * @returns a new buffer owned by the caller.
 * @throws WireError `UNKNOWN_REQUEST` (not in this dialect), `BAD_VALUE` (flags or payload value), `OVERFLOW`.
 */
export function encodeMessage<N extends FrontendRequestName>(
  channel: "frontend",
  request: N,
  flags: number,
  value: FrontendRequestValue<N>,
  dialect?: Dialect,
): Uint8Array;
/** Encode a back-end channel request frame (see the front-end overload). */
export function encodeMessage<N extends BackendRequestName>(
  channel: "backend",
  request: N,
  flags: number,
  value: BackendRequestValue<N>,
  dialect?: Dialect,
): Uint8Array;
export function encodeMessage(channel: Channel, request: string, flags: number, value: unknown, dialect: Dialect = UPSTREAM): Uint8Array {
  const spec = specByName(channel, request, dialect);
  checkRequestFlags(spec.name, flags);
  return encodeFrame(spec, spec.request, flags, value);
}

/** Options of {@link encodeReply}. */
export interface ReplyOptions {
  /** Postcopy mode: SET_MEM_TABLE / ADD_MEM_REG replies carry the table / region. */
  readonly postcopy?: boolean;
}

/**
 * Encode the reply to front-end request `request` (flags exactly VERSION | REPLY = 0x5).
 * For ack-rule requests `value` is the u64 status (0 = success).
 * @returns a new buffer owned by the caller.
 * @throws WireError `UNKNOWN_REQUEST`, `BAD_VALUE`, `OVERFLOW`.
 */
export function encodeReply<N extends FrontendRequestName>(
  channel: "frontend",
  request: N,
  value: FrontendReplyValue<N>,
  dialect?: Dialect,
  options?: ReplyOptions,
): Uint8Array;
/** Encode the reply to a back-end request (see the front-end overload). */
export function encodeReply<N extends BackendRequestName>(
  channel: "backend",
  request: N,
  value: BackendReplyValue<N>,
  dialect?: Dialect,
  options?: ReplyOptions,
): Uint8Array;
export function encodeReply(channel: Channel, request: string, value: unknown, dialect: Dialect = UPSTREAM, options: ReplyOptions = {}): Uint8Array {
  const spec = specByName(channel, request, dialect);
  return encodeFrame(spec, replyCodec(spec, options.postcopy), HeaderFlag.VERSION | HeaderFlag.REPLY, value);
}

function decodeFrame(
  channel: Channel,
  bytes: Uint8Array,
  dialect: Dialect,
  limits: FrameLimits,
  wantReply: boolean,
): { channel: Channel; name: string; header: MessageHeader; value: unknown } {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const header = readHeader(view);
  const spec = specById(channel, header.request, dialect);
  const replyBits = header.flags & (HeaderFlag.REPLY | HeaderFlag.NEED_REPLY);
  if (wantReply ? replyBits !== HeaderFlag.REPLY : (replyBits & HeaderFlag.REPLY) !== 0) {
    throw new WireError("BAD_VALUE", `${spec.name}: flags 0x${header.flags.toString(16)} on a ${wantReply ? "reply (expected 0x5)" : "request (REPLY set)"}`, {
      request: spec.name,
      expected: wantReply ? 0x5 : "0x1 or 0x9",
      actual: header.flags,
      offset: 4,
    });
  }
  const codec = wantReply ? replyCodec(spec, limits.postcopy) : spec.request;
  checkPayloadSize(spec, codec, header.size, limits.maxPayload ?? MAX_PAYLOAD_SIZE);
  const have = bytes.byteLength - HEADER_SIZE;
  if (have !== header.size) {
    throw new WireError(
      have < header.size ? "TRUNCATED" : "BAD_SIZE",
      `${spec.name}: header size 0x${header.size.toString(16)} but 0x${have.toString(16)} payload bytes`,
      {
        request: spec.name,
        expected: header.size,
        actual: have,
        offset: HEADER_SIZE,
      },
    );
  }
  const reader = new ByteReader(bytes, spec.name, HEADER_SIZE, bytes.byteLength, view);
  const value = codec.decode(reader);
  reader.finish();
  return { channel, name: spec.name, header, value };
}

/**
 * Decode one whole request frame (`bytes` = header + exactly `size` payload bytes; zero-copy over
 * its byteOffset/byteLength). The header size is checked against the table before the body is read.
 * Variable data in the value (config bytes, MEM_WRITE data, UUIDs) are `subarray` views of `bytes`:
 * valid until that buffer is reused; copy to keep. Stateless: after an error the next call works.
 * @throws WireError `TRUNCATED`, `BAD_VERSION`, `RESERVED_FLAGS`, `UNKNOWN_REQUEST`, `TOO_LARGE`,
 * `BAD_SIZE`, `BAD_VALUE`, `OVERFLOW`, `NONZERO_PADDING` — and nothing else.
 */
export function decodeMessage(channel: "frontend", bytes: Uint8Array, dialect?: Dialect, limits?: FrameLimits): DecodedFrontendRequest;
/** Decode one back-end channel request frame (see the front-end overload). */
export function decodeMessage(channel: "backend", bytes: Uint8Array, dialect?: Dialect, limits?: FrameLimits): DecodedBackendRequest;
/** Decode one request frame on either channel. */
export function decodeMessage(channel: Channel, bytes: Uint8Array, dialect?: Dialect, limits?: FrameLimits): DecodedFrontendRequest | DecodedBackendRequest;
export function decodeMessage(
  channel: Channel,
  bytes: Uint8Array,
  dialect: Dialect = UPSTREAM,
  limits: FrameLimits = {},
): DecodedFrontendRequest | DecodedBackendRequest {
  return decodeFrame(channel, bytes, dialect, limits, false) as DecodedFrontendRequest | DecodedBackendRequest;
}

/**
 * Decode one whole reply frame to a request on `channel` (flags must be exactly 0x5). Ack-rule
 * replies decode as a u64 status; pass `limits.postcopy` for postcopy SET_MEM_TABLE / ADD_MEM_REG.
 * Same zero-copy lifetime and error set as {@link decodeMessage}.
 * @throws WireError as {@link decodeMessage}.
 */
export function decodeReply(channel: "frontend", bytes: Uint8Array, dialect?: Dialect, limits?: FrameLimits): DecodedFrontendReply;
/** Decode one reply to a back-end request (see the front-end overload). */
export function decodeReply(channel: "backend", bytes: Uint8Array, dialect?: Dialect, limits?: FrameLimits): DecodedBackendReply;
/** Decode one reply frame on either channel. */
export function decodeReply(channel: Channel, bytes: Uint8Array, dialect?: Dialect, limits?: FrameLimits): DecodedFrontendReply | DecodedBackendReply;
export function decodeReply(
  channel: Channel,
  bytes: Uint8Array,
  dialect: Dialect = UPSTREAM,
  limits: FrameLimits = {},
): DecodedFrontendReply | DecodedBackendReply {
  return decodeFrame(channel, bytes, dialect, limits, true) as DecodedFrontendReply | DecodedBackendReply;
}
