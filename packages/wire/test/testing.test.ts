/**
 * `@vhostkit/wire/testing`: the subpath resolves from the built package and its hand-built frames
 * agree with the codec, including inside sentinel-padded buffers (non-zero byteOffset).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { decodeMessage, encodeMessage, isWireError } from "@vhostkit/wire";
import { buildFrame, bytesToHex, hexToBytes, inSentinelBuffer, leHex } from "@vhostkit/wire/testing";

test("leHex / hexToBytes / bytesToHex", () => {
  assert.equal(leHex(0x1234, 4), "34120000");
  assert.equal(leHex(0x0102_0304_0506_0708n, 8), "0807060504030201");
  assert.throws(() => leHex(256, 1), RangeError);
  assert.throws(() => leHex(-1, 4), RangeError);
  assert.deepEqual(hexToBytes("0b00 | 0000"), Uint8Array.of(0x0b, 0, 0, 0));
  assert.throws(() => hexToBytes("abc"), RangeError);
  assert.equal(bytesToHex(Uint8Array.of(0, 0xff, 0x10).subarray(1)), "ff10");
});

test("buildFrame matches encodeMessage and decodes at a non-zero byteOffset", () => {
  const payload = leHex(0, 4) + leHex(256, 4);
  const built = buildFrame(8, 0x1, payload);
  assert.deepEqual(built, encodeMessage("frontend", "SET_VRING_NUM", 1, { index: 0, num: 256 }));
  const s = inSentinelBuffer(built);
  assert.notEqual(s.frame.byteOffset, 0);
  assert.deepEqual(decodeMessage("frontend", s.frame).value, { index: 0, num: 256 });
  assert.ok(s.sentinelsIntact());
  s.buffer[0] = 0;
  assert.ok(!s.sentinelsIntact());
});

test("a frame whose header lies about its size is rejected", () => {
  assert.throws(
    () => decodeMessage("frontend", buildFrame(8, 0x1, leHex(0, 8), 16)),
    (e: unknown) => isWireError(e) && e.code === "BAD_SIZE",
  );
});
