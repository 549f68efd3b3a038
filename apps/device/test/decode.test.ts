/**
 * `vhost-user-device decode` and the frame description behind it and `trace`: golden frames of
 * both channels (docs/protocol.md#message-header), dialect-specific ids (docs/shmem.md#dialects),
 * zero-size refusals, and hostile frames described without throwing.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { BackendRequest, CROSVM_LEGACY, encodeMessage, encodeReply, FrontendRequest, UPSTREAM } from "@vhostkit/wire";
import { describeFrame, displayValue, headerFlagNames } from "../src/trace/describe-frame.js";
import { cli } from "./helpers/run-cli.js";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

test("requests and replies of the main socket: names, flags by name, fields with u64 as hex", () => {
  const get = describeFrame("frontend", encodeMessage("frontend", "GET_FEATURES", 1, undefined), UPSTREAM);
  assert.deepEqual(get, {
    name: "GET_FEATURES",
    request: FrontendRequest.GET_FEATURES,
    reply: false,
    flags: 1,
    flagNames: ["VERSION_1"],
    size: 0,
    value: null,
  });
  const reply = describeFrame("frontend", encodeReply("frontend", "GET_FEATURES", 0x175007e46n), UPSTREAM);
  assert.deepEqual([reply.name, reply.reply, reply.flagNames, reply.size, reply.value], ["GET_FEATURES", true, ["VERSION_1", "REPLY"], 8, "0x175007e46"]);
  const addr = describeFrame(
    "frontend",
    encodeMessage("frontend", "SET_VRING_ADDR", 9, { index: 1, flags: 0, descAddr: 0x1000n, usedAddr: 0x2000n, availAddr: 0x3000n, logAddr: 0n }),
    UPSTREAM,
  );
  assert.deepEqual(addr.flagNames, ["VERSION_1", "NEED_REPLY"]);
  assert.deepEqual(addr.value, { index: 1, flags: 0, descAddr: "0x1000", usedAddr: "0x2000", availAddr: "0x3000", logAddr: "0x0" });
});

test("back-end channel: SHMEM_MAP in the upstream dialect and crosvm's id 1000 in its own", () => {
  const map = { shmid: 1, fdOffset: 0n, shmOffset: 0x100000n, len: 0x12c000n, flags: 1n };
  const up = describeFrame("backend", encodeMessage("backend", "BACKEND_SHMEM_MAP", 9, map), UPSTREAM);
  assert.equal(up.name, "BACKEND_SHMEM_MAP");
  assert.deepEqual(up.value, { shmid: 1, fdOffset: "0x0", shmOffset: "0x100000", len: "0x12c000", flags: "0x1" });
  const cros = describeFrame(
    "backend",
    encodeMessage("backend", "CROSVM_SHMEM_MAP", 1, { flags: 0, shmid: 1, shmOffset: 0x1000n, fdOffset: 0n, len: 0x1000n }, CROSVM_LEGACY),
    CROSVM_LEGACY,
  );
  assert.deepEqual([cros.name, cros.request], ["CROSVM_SHMEM_MAP", BackendRequest.CROSVM_SHMEM_MAP]);
  assert.match(
    describeFrame(
      "backend",
      encodeMessage("backend", "CROSVM_SHMEM_MAP", 1, { flags: 0, shmid: 1, shmOffset: 0x1000n, fdOffset: 0n, len: 0x1000n }, CROSVM_LEGACY),
      UPSTREAM,
    ).error ?? "",
    /unknown backend request/,
    "the same id means nothing upstream",
  );
});

test("a zero-size reply is a refusal; hostile frames are described, never thrown", () => {
  const refused = describeFrame("frontend", new Uint8Array([FrontendRequest.GET_CONFIG, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0]), UPSTREAM);
  assert.deepEqual([refused.name, refused.note, refused.error], ["GET_CONFIG", "zero-size reply: refused", undefined]);
  const short = describeFrame("frontend", new Uint8Array([1, 0, 0]), UPSTREAM);
  assert.match(short.error ?? "", /no header/);
  const lying = describeFrame("frontend", new Uint8Array([...encodeMessage("frontend", "SET_FEATURES", 1, 1n).subarray(0, 12), 1, 2, 3]), UPSTREAM);
  assert.equal(lying.name, "SET_FEATURES");
  assert.ok(lying.error !== undefined, "a payload shorter than the header says");
  const unknown = describeFrame("frontend", new Uint8Array([0xee, 0xee, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]), UPSTREAM);
  assert.equal(unknown.name, "UNKNOWN(0xeeee)");
  assert.deepEqual(headerFlagNames(0x2d), ["VERSION_1", "REPLY", "NEED_REPLY", "0x20"]);
  assert.deepEqual(displayValue({ data: new Uint8Array(100).fill(0xab), list: [1n] }), { data: { bytes: 100, head: "ab".repeat(64) }, list: ["0x1"] });
});

test("the CLI: one JSON object per frame; a frame that does not decode exits 1 after all are printed; non-hex exits 2", async () => {
  const ok = await cli("decode", "--compact", hex(encodeMessage("frontend", "GET_QUEUE_NUM", 1, undefined)), hex(encodeReply("frontend", "GET_QUEUE_NUM", 2n)));
  assert.equal(ok.code, 0, ok.stderr);
  const lines = ok.stdout
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as { name: string; reply: boolean; value: unknown });
  assert.deepEqual(
    lines.map((l) => [l.name, l.reply, l.value]),
    [
      ["GET_QUEUE_NUM", false, null],
      ["GET_QUEUE_NUM", true, "0x2"],
    ],
  );
  const map = await cli(
    "decode",
    "--channel",
    "backend",
    hex(encodeMessage("backend", "BACKEND_SHMEM_UNMAP", 1, { shmid: 1, fdOffset: 0n, shmOffset: 0x10000n, len: 0x10000n, flags: 0n })),
  );
  assert.equal(map.code, 0, map.stderr);
  assert.equal((JSON.parse(map.stdout) as { value: { shmOffset: string } }).value.shmOffset, "0x10000");
  const bad = await cli("decode", "--compact", "0300000001000000010000", hex(encodeMessage("frontend", "GET_FEATURES", 1, undefined)));
  assert.equal(bad.code, 1);
  assert.equal(bad.stdout.trim().split("\n").length, 2, "every frame printed");
  assert.equal(bad.stderr, "vhost-user-device: decode: 1 of 2 frame(s) did not decode\n");
  const notHex = await cli("decode", "zz");
  assert.equal(notHex.code, 2);
});
