/**
 * encode -> decode -> encode for every message of every dialect (requests, replies, postcopy
 * replies), property-based with fast-check: the decoded value equals the generated one and the
 * second encoding is byte-identical to the first.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import type { Channel, DialectName, MessageSpec } from "@vhostkit/wire";
import { Dialects, decodeMessage, decodeReply, encodeMessage, encodeReply, messageSpecs } from "@vhostkit/wire";
import { arbitraryFor } from "./arbitraries.js";

type Loose = (channel: Channel, ...rest: unknown[]) => Uint8Array;
const encodeReq = encodeMessage as unknown as Loose;
const encodeRep = encodeReply as unknown as Loose;

const RUNS = 25;

function roundTrip(first: Uint8Array, decode: (b: Uint8Array) => { value: unknown; name: string }, encode: (v: unknown) => Uint8Array, value: unknown, name: string): void {
  const decoded = decode(first);
  assert.equal(decoded.name, name);
  assert.deepEqual(decoded.value, value);
  assert.deepEqual(encode(decoded.value), first);
}

for (const dialectName of Object.keys(Dialects) as DialectName[]) {
  const dialect = Dialects[dialectName];
  describe(`round trip, dialect ${dialectName}`, () => {
    for (const channel of ["frontend", "backend"] as const) {
      for (const spec of messageSpecs(channel, dialect) as MessageSpec[]) {
        test(`${spec.name} request`, () => {
          fc.assert(
            fc.property(arbitraryFor(spec.request), fc.constantFrom(0x1, 0x9), (value, flags) => {
              const enc = (v: unknown): Uint8Array => encodeReq(channel, spec.name, flags, v, dialect);
              roundTrip(enc(value), (b) => decodeMessage(channel, b, dialect, { maxPayload: 1 << 20 }), enc, value, spec.name);
            }),
            { numRuns: RUNS },
          );
        });
        for (const postcopy of spec.postcopyReply === undefined ? [false] : [false, true]) {
          test(`${spec.name} reply${postcopy ? " (postcopy)" : ""}`, () => {
            const codec = postcopy && spec.postcopyReply !== undefined ? spec.postcopyReply : spec.reply;
            fc.assert(
              fc.property(arbitraryFor(codec), (value) => {
                const enc = (v: unknown): Uint8Array => encodeRep(channel, spec.name, v, dialect, { postcopy });
                roundTrip(enc(value), (b) => decodeReply(channel, b, dialect, { maxPayload: 1 << 20, postcopy }), enc, value, spec.name);
              }),
              { numRuns: RUNS },
            );
          });
        }
      }
    }
  });
}
