/**
 * Cross-check against bytes captured from a real peer: qemu-storage-daemon 7.2 (vhost-user-blk),
 * see fixtures/observed/qsd-7.2/README.md. No qsd is needed at test time.
 *
 * Headers go through @vhostkit/wire's public `decodeHeader`, request ids through
 * `FrontendRequest`/`requireRequestName`, feature words through `VirtioFeature`/`ProtocolFeature`,
 * payloads through the wire codecs (`U64`, `DeviceConfigCodec` via `decodeReply`/`encodeMessage`).
 * Only the virtio-blk config *contents* (device config space, not a vhost-user payload) are read
 * with a DataView.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import {
  ByteReader,
  FrontendRequest,
  HEADER_SIZE,
  HeaderFlag,
  ProtocolFeature,
  U64,
  VirtioFeature,
  decodeHeader,
  decodeReply,
  encodeMessage,
  isReply,
  needsReply,
  requireRequestName,
} from "@vhostkit/wire";
import type { DecodedFrontendReply } from "@vhostkit/wire";

const dir = new URL("./fixtures/observed/qsd-7.2/", import.meta.url);

function load(name: string): Uint8Array {
  const text = readFileSync(new URL(name, dir), "utf8").trim();
  assert.match(text, /^(?:[0-9a-f]{2})+$/u, `${name}: lowercase hex`);
  return Uint8Array.from(Buffer.from(text, "hex"));
}

/** Decode a captured reply with wire's `decodeReply`, after checking the header rules by hand. */
function reply(name: string, request: number): DecodedFrontendReply {
  const bytes = load(`${name}.reply.hex`);
  const h = decodeHeader(bytes);
  assert.equal(requireRequestName("frontend", h.request), requireRequestName("frontend", request));
  assert.equal(h.flags, HeaderFlag.VERSION | HeaderFlag.REPLY, "replies carry flags exactly 0x5");
  assert.ok(isReply(h));
  assert.ok(!needsReply(h));
  assert.equal(bytes.length, HEADER_SIZE + h.size, "size field matches the payload length");
  const decoded = decodeReply("frontend", bytes);
  assert.equal(decoded.header.request, request);
  return decoded;
}

/** A captured u64 reply: through `decodeReply`, and cross-checked with the bare `U64` codec. */
function u64Reply(name: string, request: number): bigint {
  const decoded = reply(name, request);
  assert.equal(typeof decoded.value, "bigint");
  const bytes = load(`${name}.reply.hex`);
  assert.equal(U64.decode(new ByteReader(bytes.subarray(HEADER_SIZE), decoded.name)), decoded.value);
  return decoded.value as bigint;
}

const QSD_FEATURES = 0x175007e46n;
const QSD_PROTOCOL_FEATURES = 0x8f2bn;

describe("qsd 7.2 observed replies", () => {
  test("GET_FEATURES reply is 0x175007e46 with VERSION_1 and PROTOCOL_FEATURES", () => {
    const f = u64Reply("get-features", FrontendRequest.GET_FEATURES);
    assert.equal(f, QSD_FEATURES);
    assert.equal(f & VirtioFeature.VERSION_1, VirtioFeature.VERSION_1);
    assert.equal(f & VirtioFeature.PROTOCOL_FEATURES, VirtioFeature.PROTOCOL_FEATURES);
    assert.equal(f & VirtioFeature.RING_PACKED, 0n);
  });
  test("GET_PROTOCOL_FEATURES reply is 0x8f2b (MQ, REPLY_ACK, CONFIG, CONFIGURE_MEM_SLOTS, ...)", () => {
    const pf = u64Reply("get-protocol-features", FrontendRequest.GET_PROTOCOL_FEATURES);
    assert.equal(pf, QSD_PROTOCOL_FEATURES);
    const expected =
      ProtocolFeature.MQ |
      ProtocolFeature.LOG_SHMFD |
      ProtocolFeature.REPLY_ACK |
      ProtocolFeature.BACKEND_REQ |
      ProtocolFeature.PAGEFAULT |
      ProtocolFeature.CONFIG |
      ProtocolFeature.BACKEND_SEND_FD |
      ProtocolFeature.HOST_NOTIFIER |
      ProtocolFeature.CONFIGURE_MEM_SLOTS;
    assert.equal(pf, expected);
  });
  test("SET_PROTOCOL_FEATURES with NEED_REPLY gets REPLY_ACK 0", () => {
    assert.equal(u64Reply("set-protocol-features", FrontendRequest.SET_PROTOCOL_FEATURES), 0n);
  });
  test("GET_QUEUE_NUM reply is 1", () => {
    assert.equal(u64Reply("get-queue-num", FrontendRequest.GET_QUEUE_NUM), 1n);
  });
  test("GET_MAX_MEM_SLOTS reply is 32", () => {
    assert.equal(u64Reply("get-max-mem-slots", FrontendRequest.GET_MAX_MEM_SLOTS), 32n);
  });
  test("SET_OWNER with NEED_REPLY gets REPLY_ACK 0", () => {
    assert.equal(u64Reply("set-owner", FrontendRequest.SET_OWNER), 0n);
  });
  test("GET_CONFIG reply: 60-byte virtio-blk config, capacity 2048", () => {
    const decoded = reply("get-config", FrontendRequest.GET_CONFIG);
    assert.equal(decoded.name, "GET_CONFIG");
    if (decoded.name !== "GET_CONFIG") return;
    const { offset, flags, data } = decoded.value;
    assert.deepEqual([offset, data.byteLength, flags], [0, 60, 0]);
    const cfg = new DataView(data.buffer, data.byteOffset, data.byteLength);
    assert.equal(cfg.getBigUint64(0, true), 2048n, "capacity in 512-byte sectors");
    assert.equal(cfg.getUint32(12, true), 126, "seg_max");
    assert.equal(cfg.getUint32(20, true), 512, "blk_size");
    assert.equal(cfg.getUint16(34, true), 1, "num_queues");
    assert.equal(cfg.getUint32(36, true), 32768, "max_discard_sectors");
    assert.equal(cfg.getUint32(48, true), 32768, "max_write_zeroes_sectors");
  });
});

describe("our requests are byte-identical to the captured ones", () => {
  const plain = HeaderFlag.VERSION;
  const ack = HeaderFlag.VERSION | HeaderFlag.NEED_REPLY;
  const cases: ReadonlyArray<readonly [string, Uint8Array]> = [
    ["get-features", encodeMessage("frontend", "GET_FEATURES", plain, undefined)],
    ["get-protocol-features", encodeMessage("frontend", "GET_PROTOCOL_FEATURES", plain, undefined)],
    ["set-protocol-features", encodeMessage("frontend", "SET_PROTOCOL_FEATURES", ack, QSD_PROTOCOL_FEATURES)],
    ["get-queue-num", encodeMessage("frontend", "GET_QUEUE_NUM", plain, undefined)],
    ["get-max-mem-slots", encodeMessage("frontend", "GET_MAX_MEM_SLOTS", plain, undefined)],
    ["set-owner", encodeMessage("frontend", "SET_OWNER", ack, undefined)],
    ["get-config", encodeMessage("frontend", "GET_CONFIG", plain, { offset: 0, flags: 0, data: new Uint8Array(60) })],
  ];
  for (const [name, ours] of cases) {
    test(name, () => {
      const captured = load(`${name}.request.hex`);
      assert.deepEqual(ours, captured);
      const h = decodeHeader(captured);
      assert.ok(!isReply(h));
      assert.equal(needsReply(h), name === "set-protocol-features" || name === "set-owner");
    });
  }
});
