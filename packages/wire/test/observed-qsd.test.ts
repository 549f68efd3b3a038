/**
 * Cross-check against bytes captured from a real peer: qemu-storage-daemon 7.2 (vhost-user-blk),
 * see fixtures/observed/qsd-7.2/README.md. No qsd is needed at test time.
 *
 * Headers go through @vhostkit/wire's public `decodeHeader`/`writeHeader`, request ids through
 * `FrontendRequest`/`requireRequestName`, feature words through `VirtioFeature`/`ProtocolFeature`.
 * wire exposes no payload codecs yet (u64, device config), so those few fields are read and written
 * here with a DataView (little-endian, PROTOCOL.md §1.5); replace them when wire gains codecs.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import {
  FrontendRequest,
  HEADER_SIZE,
  HeaderFlag,
  ProtocolFeature,
  VirtioFeature,
  decodeHeader,
  isReply,
  needsReply,
  requireRequestName,
  writeHeader,
} from "@vhostkit/wire";

const dir = new URL("./fixtures/observed/qsd-7.2/", import.meta.url);

function load(name: string): Uint8Array {
  const text = readFileSync(new URL(name, dir), "utf8").trim();
  assert.match(text, /^(?:[0-9a-f]{2})+$/u, `${name}: lowercase hex`);
  return Uint8Array.from(Buffer.from(text, "hex"));
}

/** Our own request frame: wire's header encoder plus `payload`. */
function encodeRequest(request: number, flags: number, payload: Uint8Array = new Uint8Array(0)): Uint8Array {
  const out = new Uint8Array(HEADER_SIZE + payload.length);
  writeHeader(new DataView(out.buffer), 0, { request, flags, size: payload.length });
  out.set(payload, HEADER_SIZE);
  return out;
}

function u64Payload(value: bigint): Uint8Array {
  const p = new Uint8Array(8);
  new DataView(p.buffer).setBigUint64(0, value, true);
  return p;
}

/** Decode a captured reply: header via wire, payload as a DataView. */
function decodeReply(name: string, request: number): DataView {
  const bytes = load(`${name}.reply.hex`);
  const h = decodeHeader(bytes);
  assert.equal(requireRequestName("frontend", h.request), requireRequestName("frontend", request));
  assert.equal(h.flags, HeaderFlag.VERSION | HeaderFlag.REPLY, "replies carry flags exactly 0x5");
  assert.ok(isReply(h));
  assert.ok(!needsReply(h));
  assert.equal(bytes.length, HEADER_SIZE + h.size, "size field matches the payload length");
  return new DataView(bytes.buffer, bytes.byteOffset + HEADER_SIZE, h.size);
}

function u64Reply(name: string, request: number): bigint {
  const p = decodeReply(name, request);
  assert.equal(p.byteLength, 8);
  return p.getBigUint64(0, true);
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
    const p = decodeReply("get-config", FrontendRequest.GET_CONFIG);
    assert.equal(p.byteLength, 12 + 60);
    assert.deepEqual([p.getUint32(0, true), p.getUint32(4, true), p.getUint32(8, true)], [0, 60, 0]);
    const cfg = new DataView(p.buffer, p.byteOffset + 12, 60);
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
  const configRequest = new Uint8Array(12 + 60);
  new DataView(configRequest.buffer).setUint32(4, 60, true);
  const cases: ReadonlyArray<readonly [string, Uint8Array]> = [
    ["get-features", encodeRequest(FrontendRequest.GET_FEATURES, plain)],
    ["get-protocol-features", encodeRequest(FrontendRequest.GET_PROTOCOL_FEATURES, plain)],
    ["set-protocol-features", encodeRequest(FrontendRequest.SET_PROTOCOL_FEATURES, ack, u64Payload(QSD_PROTOCOL_FEATURES))],
    ["get-queue-num", encodeRequest(FrontendRequest.GET_QUEUE_NUM, plain)],
    ["get-max-mem-slots", encodeRequest(FrontendRequest.GET_MAX_MEM_SLOTS, plain)],
    ["set-owner", encodeRequest(FrontendRequest.SET_OWNER, ack)],
    ["get-config", encodeRequest(FrontendRequest.GET_CONFIG, plain, configRequest)],
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
