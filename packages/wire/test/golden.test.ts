/**
 * Golden frames: every message of docs/protocol.md and docs/shmem.md in every dialect, one test per
 * distinct encoding. Most frames are byte-identical in all four dialects; such a frame is one test
 * that still reads the fixture of every dialect that has it, checks it against the hand-written hex
 * of golden-cases.ts, decodes it in that dialect to the expected value, and re-encodes the value to
 * the file byte for byte. What does differ between dialects is spelled out below ("what differs").
 */
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { describe, test } from "node:test";
import type { Channel, DialectName } from "@vhostkit/wire";
import { Dialects, decodeMessage, decodeReply, encodeMessage, encodeReply, messageSpecs, tryMessageSpec } from "@vhostkit/wire";
import { GOLDEN, distinctGolden, goldenDir } from "./helpers/golden-cases.js";
import type { GoldenCase } from "./helpers/golden-cases.js";

const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");
const DIALECTS = Object.keys(GOLDEN) as DialectName[];
const dialectsOf = (names: readonly DialectName[]): string => (names.length === DIALECTS.length ? "every dialect" : names.join(", "));

function load(dialect: DialectName, file: string): Uint8Array {
  const text = readFileSync(new URL(`${file}.hex`, goldenDir(dialect)), "utf8").trim();
  assert.match(text, /^(?:[0-9a-f]{2})+$/u, `${dialect}/${file}: one frame of lowercase hex`);
  return Uint8Array.from(Buffer.from(text, "hex"));
}

// The typed overloads need literal names; golden cases carry plain strings, so call through a loose view.
type Loose = (channel: Channel, ...rest: unknown[]) => unknown;
const encodeReq = encodeMessage as unknown as Loose;
const encodeRep = encodeReply as unknown as Loose;

function encodeCase(c: GoldenCase, dialect: DialectName): Uint8Array {
  const d = Dialects[dialect];
  return (
    c.kind === "request" ? encodeReq(c.channel, c.name, c.flags, c.value, d) : encodeRep(c.channel, c.name, c.value, d, { postcopy: c.postcopy === true })
  ) as Uint8Array;
}

function decodeCase(c: GoldenCase, bytes: Uint8Array, dialect: DialectName) {
  const d = Dialects[dialect];
  return c.kind === "request" ? decodeMessage(c.channel, bytes, d) : decodeReply(c.channel, bytes, d, { postcopy: c.postcopy === true });
}

describe("golden frames", () => {
  test("each dialect's fixture directory holds exactly its cases", () => {
    for (const dialect of DIALECTS) {
      const files = readdirSync(goldenDir(dialect))
        .filter((f) => f.endsWith(".hex"))
        .map((f) => f.slice(0, -4))
        .sort();
      assert.deepEqual(files, GOLDEN[dialect].map((c) => c.file).sort(), dialect);
    }
  });

  test("every request of every dialect has a request frame and a reply frame", () => {
    for (const dialect of DIALECTS) {
      for (const channel of ["frontend", "backend"] as const) {
        for (const spec of messageSpecs(channel, Dialects[dialect])) {
          for (const kind of ["request", "reply"] as const) {
            assert.ok(
              GOLDEN[dialect].some((c) => c.channel === channel && c.name === spec.name && c.kind === kind),
              `${dialect}: no ${kind} frame for ${spec.name}`,
            );
          }
        }
      }
    }
  });

  for (const frame of distinctGolden()) {
    test(`${frame.file} (${dialectsOf(frame.cases.map((x) => x.dialect))})`, () => {
      for (const { dialect, case: c } of frame.cases) {
        const bytes = load(dialect, c.file);
        assert.equal(hex(bytes), frame.hex, `${dialect}: fixture matches the hand-written layout`);
        const decoded = decodeCase(c, bytes, dialect);
        assert.equal(decoded.name, c.name, dialect);
        assert.equal(decoded.header.flags, c.flags, dialect);
        assert.deepEqual(decoded.value, c.value, dialect);
        assert.equal(hex(encodeCase(c, dialect)), frame.hex, `${dialect}: re-encodes byte-exact`);
      }
    });
  }
});

describe("what differs between dialects", () => {
  test("frames: only the SHMEM messages and the protocol-feature masks; every other frame is one encoding for all", () => {
    const byFile = new Map<string, string[]>();
    for (const frame of distinctGolden()) byFile.set(frame.file, [...(byFile.get(frame.file) ?? []), frame.cases.map((x) => x.dialect).join("+")]);
    const differing = [...byFile].filter(([, encodings]) => encodings.length > 1 || encodings[0] !== DIALECTS.join("+"));
    const upstreamFamily = "upstream+rust-vmm-0.16+draft";
    assert.deepEqual(
      differing.map(([file, encodings]) => `${file}: ${encodings.join(" | ")}`).sort(),
      [
        // Per dialect: the mask carries the dialect's SHMEM bit (next test).
        "get-protocol-features.reply: upstream | rust-vmm-0.16 | draft | crosvm-legacy",
        "set-protocol-features.request: upstream | rust-vmm-0.16 | draft | crosvm-legacy",
        // Upstream family: ids 44/9/10, 40-byte VhostUserMMap.
        `backend.shmem-map.reply: ${upstreamFamily}`,
        `backend.shmem-map.request-readonly: ${upstreamFamily}`,
        `backend.shmem-map.request: ${upstreamFamily}`,
        `backend.shmem-unmap.reply: ${upstreamFamily}`,
        `backend.shmem-unmap.request: ${upstreamFamily}`,
        `get-shmem-config.reply-256-regions: ${upstreamFamily}`,
        `get-shmem-config.reply: ${upstreamFamily}`,
        `get-shmem-config.request: ${upstreamFamily}`,
        // crosvm legacy: ids 1004/1000/1001, its own 32-byte map and 24-byte unmap layouts.
        "backend.crosvm-shmem-map.reply: crosvm-legacy",
        "backend.crosvm-shmem-map.request: crosvm-legacy",
        "backend.crosvm-shmem-unmap.reply: crosvm-legacy",
        "backend.crosvm-shmem-unmap.request: crosvm-legacy",
        "get-shared-memory-regions.reply: crosvm-legacy",
        "get-shared-memory-regions.request: crosvm-legacy",
      ].sort(),
    );
    const mapPayload = (dialect: DialectName, file: string): number => load(dialect, file).byteLength - 12;
    assert.deepEqual([mapPayload("upstream", "backend.shmem-map.request"), mapPayload("upstream", "backend.shmem-unmap.request")], [40, 40]);
    assert.deepEqual(
      [mapPayload("crosvm-legacy", "backend.crosvm-shmem-map.request"), mapPayload("crosvm-legacy", "backend.crosvm-shmem-unmap.request")],
      [32, 24],
    );
  });

  test("the protocol-feature masks differ in exactly the dialect's SHMEM bit: 22, 21, 20, 31", () => {
    const bit = (dialect: DialectName): number => Dialects[dialect].shmemFeature.toString(2).length - 1;
    assert.deepEqual(
      DIALECTS.map((d) => `${d} ${bit(d)}`),
      ["upstream 22", "rust-vmm-0.16 21", "draft 20", "crosvm-legacy 31"],
    );
    for (const [file, channel] of [
      ["get-protocol-features.reply", "reply"],
      ["set-protocol-features.request", "request"],
    ] as const) {
      for (const dialect of DIALECTS) {
        const bytes = load(dialect, file);
        const d = Dialects[dialect];
        const mask = (channel === "reply" ? decodeReply("frontend", bytes, d) : decodeMessage("frontend", bytes, d)).value as bigint;
        assert.equal(mask & d.shmemFeature, d.shmemFeature, `${dialect} ${file}: SHMEM at bit ${bit(dialect)}`);
        assert.equal(mask ^ d.shmemFeature, 0x8f2bn, `${dialect} ${file}: every other bit as upstream's`);
      }
    }
  });

  test("message table: the same spec (same codecs) in every dialect, except the SHMEM ids", () => {
    const differing: string[] = [];
    for (const channel of ["frontend", "backend"] as const) {
      const ids = new Set(DIALECTS.flatMap((d) => messageSpecs(channel, Dialects[d]).map((s) => s.id)));
      for (const id of [...ids].sort((a, b) => a - b)) {
        const specs = DIALECTS.map((d) => tryMessageSpec(channel, id, Dialects[d]));
        if (specs.every((s) => s !== undefined && s === specs[0])) continue;
        const has = DIALECTS.filter((_, i) => specs[i] !== undefined);
        const first = specs.find((s) => s !== undefined);
        // Within the dialects that know the id, one spec object: one codec, one reply rule.
        assert.ok(
          specs.every((s) => s === undefined || s === first),
          `${channel} ${id}: one spec where it exists`,
        );
        differing.push(`${channel} ${id} ${first?.name} ${first?.replyRule}: ${has.join("+")}`);
      }
    }
    assert.deepEqual(differing, [
      "frontend 44 GET_SHMEM_CONFIG always: upstream+rust-vmm-0.16+draft",
      "frontend 1004 GET_SHARED_MEMORY_REGIONS always: crosvm-legacy",
      "backend 9 BACKEND_SHMEM_MAP ack: upstream+rust-vmm-0.16+draft",
      "backend 10 BACKEND_SHMEM_UNMAP ack: upstream+rust-vmm-0.16+draft",
      // crosvm legacy answers MAP/UNMAP always, whatever REPLY_ACK says.
      "backend 1000 CROSVM_SHMEM_MAP always: crosvm-legacy",
      "backend 1001 CROSVM_SHMEM_UNMAP always: crosvm-legacy",
    ]);
  });

  test("an id of one family is an unknown request in the other", () => {
    for (const name of ["upstream", "rust-vmm-0.16", "draft"] as const) {
      assert.throws(() => decodeMessage("backend", load("crosvm-legacy", "backend.crosvm-shmem-map.request"), Dialects[name]), { code: "UNKNOWN_REQUEST" });
      assert.throws(() => decodeReply("frontend", load("crosvm-legacy", "get-shared-memory-regions.reply"), Dialects[name]), { code: "UNKNOWN_REQUEST" });
    }
    const crosvm = Dialects["crosvm-legacy"];
    assert.throws(() => decodeMessage("backend", load("upstream", "backend.shmem-map.request"), crosvm), { code: "UNKNOWN_REQUEST" });
    assert.throws(() => decodeReply("frontend", load("upstream", "get-shmem-config.reply"), crosvm), { code: "UNKNOWN_REQUEST" });
  });
});

describe("docs/shmem.md#example-frames, verbatim", () => {
  const strip = (s: string): string => s.replaceAll(/[\s|]/gu, "");
  const readReq = strip("0b000000 09000000 10000000 | 0000000001000000 00100000 00000000");
  const readRepHead = strip("0b000000 05000000 10100000 | 0000000001000000 00100000 00000000");
  const writeReq = strip("0c000000 09000000 14000000 | 0020000000000000 04000000 00000000 deadbeef");
  const writeRep = strip("0c000000 05000000 08000000 | 0000000000000000");
  test("MEM_READ request and reply", () => {
    assert.equal(hex(encodeMessage("backend", "BACKEND_MEM_READ", 0x9, { guestAddress: 0x1_0000_0000n, size: 0x1000 })), readReq);
    const data = new Uint8Array(0x1000).fill(0xa5);
    const rep = encodeReply("backend", "BACKEND_MEM_READ", { guestAddress: 0x1_0000_0000n, data });
    assert.equal(hex(rep.subarray(0, 28)), readRepHead);
    assert.equal(rep.byteLength, 28 + 4096);
    assert.equal(hex(load("upstream", "backend.mem-read.request")), readReq);
    assert.equal(hex(load("upstream", "backend.mem-read.reply").subarray(0, 28)), readRepHead);
  });
  test("MEM_WRITE request and reply", () => {
    assert.equal(hex(encodeMessage("backend", "BACKEND_MEM_WRITE", 0x9, { guestAddress: 0x2000n, data: Uint8Array.of(0xde, 0xad, 0xbe, 0xef) })), writeReq);
    assert.equal(hex(encodeReply("backend", "BACKEND_MEM_WRITE", 0n)), writeRep);
    const decoded = decodeMessage("backend", Uint8Array.from(Buffer.from(writeReq, "hex")));
    assert.equal(decoded.name, "BACKEND_MEM_WRITE");
    if (decoded.name === "BACKEND_MEM_WRITE") assert.deepEqual([...decoded.value.data], [0xde, 0xad, 0xbe, 0xef]);
  });
});
