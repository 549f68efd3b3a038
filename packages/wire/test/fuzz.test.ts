/**
 * Decoder fuzz (docs/style.md#tests): random and mutated frames — well over 100k per run — fed to
 * decodeMessage / decodeReply on both channels in every dialect. Only WireError may escape, no
 * decoded view may point outside the frame, the input and the sentinel bytes around it stay
 * untouched, and the decoder keeps decoding good frames afterwards.
 */
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { describe, test } from "node:test";
import fc from "fast-check";
import type { Channel, Dialect, DialectName } from "@vhostkit/wire";
import { Dialects, decodeMessage, decodeReply, isWireError } from "@vhostkit/wire";
import { goldenDir } from "./helpers/golden-cases.js";

const CODES = new Set(["TRUNCATED", "BAD_VERSION", "RESERVED_FLAGS", "TOO_LARGE", "BAD_SIZE", "UNKNOWN_REQUEST", "OVERFLOW", "NONZERO_PADDING", "BAD_VALUE"]);
const DIALECTS = Object.values(Dialects);
const SENTINEL = 0xa5;
const PAD = 32;

/** Every distinct golden frame of every dialect (most are the same bytes in all four), as seeds for mutation. */
const seeds: Uint8Array[] = [
  ...new Set(
    (Object.keys(Dialects) as DialectName[]).flatMap((d) =>
      readdirSync(goldenDir(d))
        .filter((f) => f.endsWith(".hex"))
        .map((f) => readFileSync(new URL(f, goldenDir(d)), "utf8").trim()),
    ),
  ),
].map((hex) => Uint8Array.from(Buffer.from(hex, "hex")));
const goodRequest = seeds.find((s) => s[0] === 9 && s[4] === 9) ?? assert.fail("no SET_VRING_ADDR seed");

/** xorshift32: fast, deterministic per seed, so a failure names its iteration. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 0x1_0000_0000;
  };
}

/** Every Uint8Array reachable from a decoded value. */
function views(v: unknown, out: Uint8Array[] = []): Uint8Array[] {
  if (v instanceof Uint8Array) out.push(v);
  else if (Array.isArray(v)) for (const x of v) views(x, out);
  else if (typeof v === "object" && v !== null) for (const x of Object.values(v)) views(x, out);
  return out;
}

let decodedOk = 0;
let rejected = 0;

/** Decode `frame` placed inside a sentinel-padded buffer, with every decoder; check the invariants. */
function probe(frame: Uint8Array, channel: Channel, dialect: Dialect, reply: boolean): void {
  const big = new Uint8Array(frame.byteLength + 2 * PAD).fill(SENTINEL);
  big.set(frame, PAD);
  const view = big.subarray(PAD, PAD + frame.byteLength);
  const before = Uint8Array.from(big);
  try {
    const decoded = reply ? decodeReply(channel, view, dialect, { postcopy: frame.byteLength % 2 === 0 }) : decodeMessage(channel, view, dialect);
    decodedOk++;
    for (const v of views(decoded.value)) {
      assert.equal(v.buffer, big.buffer, "views borrow the frame's buffer");
      assert.ok(v.byteOffset >= view.byteOffset && v.byteOffset + v.byteLength <= view.byteOffset + view.byteLength, "view stays inside the frame");
    }
  } catch (e) {
    if (!isWireError(e)) throw e;
    assert.ok(CODES.has(e.code), `unexpected code ${e.code}`);
    rejected++;
  }
  assert.deepEqual(big, before, "decoder did not write to the frame or past it");
}

function mutate(r: () => number, seed: Uint8Array): Uint8Array {
  const pick = Math.floor(r() * 6);
  let f = Uint8Array.from(seed);
  switch (pick) {
    case 0: // flip 1..4 random bytes
      for (let k = 1 + Math.floor(r() * 4); k > 0 && f.byteLength > 0; k--) f[Math.floor(r() * f.byteLength)] = Math.floor(r() * 256);
      break;
    case 1: // truncate
      f = f.subarray(0, Math.floor(r() * f.byteLength));
      break;
    case 2: {
      // extend with random bytes
      const g = new Uint8Array(f.byteLength + 1 + Math.floor(r() * 16));
      g.set(f);
      for (let i = f.byteLength; i < g.byteLength; i++) g[i] = Math.floor(r() * 256);
      f = g;
      break;
    }
    case 3: // rewrite the header size (often matching a truncation or extension)
      if (f.byteLength >= 12)
        new DataView(f.buffer).setUint32(8, r() < 0.5 ? Math.floor(r() * 0x1_0000_0000) : Math.max(0, f.byteLength - 12 + Math.floor(r() * 5) - 2), true);
      break;
    case 4: // another request id, keeping the body
      if (f.byteLength >= 12)
        new DataView(f.buffer).setUint32(0, r() < 0.9 ? Math.floor(r() * 48) : ([1000, 1001, 1004, 0xffff_ffff][Math.floor(r() * 4)] ?? 0), true);
      break;
    default: // flip header flags
      if (f.byteLength >= 12) f[4] = [0x1, 0x5, 0x9, 0xd, 0x0, 0x2, 0x11][Math.floor(r() * 7)] ?? 1;
  }
  return f;
}

describe("decoder fuzz", () => {
  test("120k mutated golden frames: only WireError, no out-of-bounds views, decoder stays usable", () => {
    const r = rng(0x5eed_1234);
    for (let i = 0; i < 120_000; i++) {
      const seed = seeds[Math.floor(r() * seeds.length)] ?? goodRequest;
      const frame = mutate(r, seed);
      const dialect = DIALECTS[i % DIALECTS.length] ?? Dialects.upstream;
      probe(frame, r() < 0.5 ? "frontend" : "backend", dialect, r() < 0.5);
      if (i % 10_000 === 0) assert.equal(decodeMessage("frontend", goodRequest).name, "SET_VRING_ADDR");
    }
    assert.ok(decodedOk > 1000, `some mutants still decode (${decodedOk})`);
    assert.ok(rejected > 10_000, `most mutants are rejected (${rejected})`);
    assert.equal(decodeMessage("frontend", goodRequest).name, "SET_VRING_ADDR");
  });

  test("fast-check: random frames with a plausible header never throw anything but WireError", () => {
    const frame = fc
      .tuple(
        fc.oneof(fc.integer({ min: 0, max: 47 }), fc.constantFrom(1000, 1001, 1004), fc.nat({ max: 0xffff_ffff })),
        fc.constantFrom(0x1, 0x5, 0x9, 0xd, 0x0, 0x3, 0x15),
        fc.uint8Array({ maxLength: 2100 }),
        fc.integer({ min: -2, max: 2 }),
      )
      .map(([id, flags, body, skew]) => {
        const f = new Uint8Array(12 + body.byteLength);
        const v = new DataView(f.buffer);
        v.setUint32(0, id, true);
        v.setUint32(4, flags, true);
        v.setUint32(8, Math.max(0, body.byteLength + skew), true);
        f.set(body, 12);
        return f;
      });
    fc.assert(
      fc.property(frame, fc.constantFrom(...DIALECTS), fc.boolean(), (f, dialect, backend) => {
        probe(f, backend ? "backend" : "frontend", dialect, !!((f[4] ?? 0) & 4));
      }),
      { numRuns: 5000 },
    );
    assert.equal(decodeMessage("frontend", goodRequest).name, "SET_VRING_ADDR");
  });

  test("fully random bytes (0..64) are rejected as WireError", () => {
    const r = rng(42);
    for (let i = 0; i < 10_000; i++) {
      const f = Uint8Array.from({ length: Math.floor(r() * 64) }, () => Math.floor(r() * 256));
      probe(f, i % 2 === 0 ? "frontend" : "backend", DIALECTS[i % DIALECTS.length] ?? Dialects.upstream, i % 3 === 0);
    }
  });
});
