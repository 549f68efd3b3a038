/**
 * encode -> decode -> encode for every message (requests, replies, postcopy replies), property-based
 * with fast-check, once per distinct encoding: a request id with its payload codec, whatever dialects
 * share it (most messages are the same spec object in all four; golden.test.ts pins what differs).
 * Each generated value is still encoded and decoded in every dialect that has the message: the frames
 * are byte-identical across them, the decoded value equals the generated one, and the second encoding
 * is byte-identical to the first.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import type { Channel, DialectName, MessageSpec, PayloadCodec } from "@vhostkit/wire";
import { Dialects, decodeMessage, decodeReply, encodeMessage, encodeReply, messageSpecs } from "@vhostkit/wire";
import { arbitraryFor } from "./helpers/arbitraries.js";

type Loose = (channel: Channel, ...rest: unknown[]) => Uint8Array;
const encodeReq = encodeMessage as unknown as Loose;
const encodeRep = encodeReply as unknown as Loose;

const RUNS = 25;
const DIALECTS = Object.keys(Dialects) as DialectName[];

/** One distinct encoding: a message's id and payload codec on one channel, and the dialects that have it. */
interface Encoding {
  readonly channel: Channel;
  readonly name: string;
  readonly kind: "request" | "reply" | "postcopy reply";
  readonly codec: PayloadCodec<unknown>;
  readonly dialects: DialectName[];
}

function encodings(): Encoding[] {
  const out = new Map<string, Encoding>();
  const codecIds = new Map<unknown, number>();
  const add = (channel: Channel, spec: MessageSpec, kind: Encoding["kind"], codec: PayloadCodec<unknown>, dialect: DialectName): void => {
    if (!codecIds.has(codec)) codecIds.set(codec, codecIds.size);
    const key = `${channel} ${spec.id} ${spec.name} ${kind} ${codecIds.get(codec)}`;
    const e = out.get(key) ?? { channel, name: spec.name, kind, codec, dialects: [] };
    e.dialects.push(dialect);
    out.set(key, e);
  };
  for (const dialect of DIALECTS) {
    for (const channel of ["frontend", "backend"] as const) {
      for (const spec of messageSpecs(channel, Dialects[dialect]) as MessageSpec[]) {
        add(channel, spec, "request", spec.request, dialect);
        add(channel, spec, "reply", spec.reply, dialect);
        if (spec.postcopyReply !== undefined) add(channel, spec, "postcopy reply", spec.postcopyReply, dialect);
      }
    }
  }
  return [...out.values()];
}

describe("round trip, once per distinct encoding", () => {
  for (const e of encodings()) {
    const where = e.dialects.length === DIALECTS.length ? "every dialect" : e.dialects.join(", ");
    test(`${e.channel} ${e.name} ${e.kind} (${where})`, () => {
      const postcopy = e.kind === "postcopy reply";
      const flagsArb = e.kind === "request" ? fc.constantFrom(0x1, 0x9) : fc.constant(0x5);
      fc.assert(
        fc.property(arbitraryFor(e.codec), flagsArb, (value, flags) => {
          let first: Uint8Array | undefined;
          for (const name of e.dialects) {
            const dialect = Dialects[name];
            const encode = (v: unknown): Uint8Array =>
              e.kind === "request" ? encodeReq(e.channel, e.name, flags, v, dialect) : encodeRep(e.channel, e.name, v, dialect, { postcopy });
            const bytes = encode(value);
            if (first === undefined) first = bytes;
            else assert.deepEqual(bytes, first, `${name}: the same frame as ${e.dialects[0]}`);
            const limits = { maxPayload: 1 << 20, postcopy };
            const decoded = e.kind === "request" ? decodeMessage(e.channel, bytes, dialect, limits) : decodeReply(e.channel, bytes, dialect, limits);
            assert.equal(decoded.name, e.name);
            assert.deepEqual(decoded.value, value, name);
            assert.deepEqual(encode(decoded.value), bytes, `${name}: re-encodes byte-identical`);
          }
        }),
        { numRuns: RUNS },
      );
    });
  }

  test("every message of every dialect is covered", () => {
    const all = encodings();
    for (const dialect of DIALECTS) {
      for (const channel of ["frontend", "backend"] as const) {
        for (const spec of messageSpecs(channel, Dialects[dialect])) {
          const kinds = all.filter((e) => e.channel === channel && e.name === spec.name && e.dialects.includes(dialect)).map((e) => e.kind);
          assert.deepEqual(kinds, spec.postcopyReply === undefined ? ["request", "reply"] : ["request", "reply", "postcopy reply"], `${dialect} ${spec.name}`);
        }
      }
    }
  });
});
