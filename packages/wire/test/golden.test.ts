/**
 * Golden frames: every message of PROTOCOL.md §2 and SHMEM.md in every dialect. For each checked-in
 * `fixtures/golden/<dialect>/<file>.hex`: the file equals the hand-written hex of golden-cases.ts,
 * it decodes to the expected value, and re-encoding that value gives the file byte for byte.
 */
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { describe, test } from "node:test";
import type { Channel, DialectName } from "@vhostkit/wire";
import { Dialects, decodeMessage, decodeReply, encodeMessage, encodeReply, messageSpecs, tryMessageSpec } from "@vhostkit/wire";
import { GOLDEN, frameHex, goldenDir } from "./golden-cases.js";
import type { GoldenCase } from "./golden-cases.js";

const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");

function load(dialect: DialectName, file: string): Uint8Array {
  const text = readFileSync(new URL(`${file}.hex`, goldenDir(dialect)), "utf8").trim();
  assert.match(text, /^(?:[0-9a-f]{2})+$/u, `${file}: one frame of lowercase hex`);
  return Uint8Array.from(Buffer.from(text, "hex"));
}

// The typed overloads need literal names; golden cases carry plain strings, so call through a loose view.
type Loose = (channel: Channel, ...rest: unknown[]) => unknown;
const encodeReq = encodeMessage as unknown as Loose;
const encodeRep = encodeReply as unknown as Loose;

function encodeCase(c: GoldenCase, dialect: DialectName): Uint8Array {
  const d = Dialects[dialect];
  return (c.kind === "request" ? encodeReq(c.channel, c.name, c.flags, c.value, d) : encodeRep(c.channel, c.name, c.value, d, { postcopy: c.postcopy === true })) as Uint8Array;
}

for (const dialect of Object.keys(GOLDEN) as DialectName[]) {
  const d = Dialects[dialect];
  describe(`golden frames, dialect ${dialect}`, () => {
    const cases = GOLDEN[dialect];
    test("the fixture directory holds exactly the cases", () => {
      const files = readdirSync(goldenDir(dialect)).filter((f) => f.endsWith(".hex")).map((f) => f.slice(0, -4)).sort();
      assert.deepEqual(files, cases.map((c) => c.file).sort());
    });
    test("every request of the dialect has a request frame and a reply frame", () => {
      for (const channel of ["frontend", "backend"] as const) {
        for (const spec of messageSpecs(channel, d)) {
          for (const kind of ["request", "reply"] as const) {
            assert.ok(cases.some((c) => c.channel === channel && c.name === spec.name && c.kind === kind), `${dialect}: no ${kind} frame for ${spec.name}`);
          }
        }
      }
    });
    for (const c of cases) {
      test(c.file, () => {
        const bytes = load(dialect, c.file);
        assert.equal(hex(bytes), frameHex(c), "fixture matches the hand-written layout");
        const decoded = c.kind === "request" ? decodeMessage(c.channel, bytes, d) : decodeReply(c.channel, bytes, d, { postcopy: c.postcopy === true });
        assert.equal(decoded.name, c.name);
        assert.equal(decoded.header.flags, c.flags);
        assert.deepEqual(decoded.value, c.value);
        assert.equal(hex(encodeCase(c, dialect)), hex(bytes), "re-encodes byte-exact");
      });
    }
  });
}

describe("dialects gate the SHMEM ids (SHMEM.md §2.2)", () => {
  test("upstream-family ids are unknown in crosvm-legacy and vice versa", () => {
    for (const name of ["upstream", "rust-vmm-0.16", "draft"] as const) {
      assert.ok(tryMessageSpec("frontend", 44, Dialects[name]));
      assert.equal(tryMessageSpec("frontend", 1004, Dialects[name]), undefined);
      assert.equal(tryMessageSpec("backend", 1000, Dialects[name]), undefined);
      assert.equal(tryMessageSpec("backend", 1001, Dialects[name]), undefined);
      assert.throws(() => decodeMessage("backend", load("crosvm-legacy", "backend.crosvm-shmem-map.request"), Dialects[name]), { code: "UNKNOWN_REQUEST" });
    }
    const crosvm = Dialects["crosvm-legacy"];
    for (const id of [9, 10]) assert.equal(tryMessageSpec("backend", id, crosvm), undefined);
    assert.equal(tryMessageSpec("frontend", 44, crosvm), undefined);
    assert.throws(() => decodeMessage("backend", load("upstream", "backend.shmem-map.request"), crosvm), { code: "UNKNOWN_REQUEST" });
    assert.throws(() => decodeReply("frontend", load("upstream", "get-shmem-config.reply"), crosvm), { code: "UNKNOWN_REQUEST" });
  });
  test("crosvm-legacy MAP/UNMAP/regions replies are mandatory; upstream MAP/UNMAP follow REPLY_ACK", () => {
    const crosvm = Dialects["crosvm-legacy"];
    for (const id of [1000, 1001]) assert.equal(tryMessageSpec("backend", id, crosvm)?.replyRule, "always");
    assert.equal(tryMessageSpec("frontend", 1004, crosvm)?.replyRule, "always");
    for (const id of [9, 10]) assert.equal(tryMessageSpec("backend", id)?.replyRule, "ack");
  });
});

describe("SHMEM.md §7.2 example frames, verbatim", () => {
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
