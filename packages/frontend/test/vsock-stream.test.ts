/**
 * virtio-vsock packets and one stream's state machine and credit accounting
 * (docs/virtio-vsock.md#credit), driven packet by packet: what a stream sends, when it waits for
 * credit, how a refusal, a reset and a peer that ignores the credit end it.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  isFrontendError,
  VsockOp,
  VsockShutdown,
  VsockStream,
  VsockType,
  decodeVsockPacket,
  encodeVsockHeader,
  VSOCK_HEADER_SIZE,
  type VsockHeader,
} from "../src/index.js";

interface Sent {
  readonly op: number;
  readonly flags: number;
  readonly len: number;
  readonly fwdCnt: number;
}

/** A stream whose packets are recorded instead of sent. */
function stream(state: "connecting" | "connected", bufAlloc = 64 * 1024): { readonly s: VsockStream; readonly sent: Sent[] } {
  const sent: Sent[] = [];
  const s: VsockStream = new VsockStream(
    { localCid: 3n, localPort: 50000, peerCid: 2n, peerPort: 1234 },
    bufAlloc,
    async (op, flags, payload) => {
      sent.push({ op, flags, len: payload?.byteLength ?? 0, fwdCnt: s.credit().fwdCnt });
    },
    state,
  );
  return { s, sent };
}

function from(op: number, extra: Partial<VsockHeader> = {}): VsockHeader {
  return { srcCid: 2n, dstCid: 3n, srcPort: 1234, dstPort: 50000, len: 0, type: VsockType.STREAM, op, flags: 0, bufAlloc: 64 * 1024, fwdCnt: 0, ...extra };
}

test("the header round-trips; a used length that disagrees with len, or is shorter than a header, is a protocol error", () => {
  const h = encodeVsockHeader(
    { srcCid: 3n, dstCid: 2n, srcPort: 7, dstPort: 8, type: VsockType.STREAM, op: VsockOp.RW, flags: 0, bufAlloc: 4096, fwdCnt: 99 },
    5,
  );
  assert.equal(h.byteLength, VSOCK_HEADER_SIZE);
  const payload = new Uint8Array([1, 2, 3, 4, 5, 6, 7]);
  const d = decodeVsockPacket(h, payload, VSOCK_HEADER_SIZE + 5);
  assert.deepEqual(
    [d.header.srcCid, d.header.dstPort, d.header.len, d.header.op, d.header.fwdCnt, [...d.payload]],
    [3n, 8, 5, VsockOp.RW, 99, [1, 2, 3, 4, 5]],
  );
  for (const used of [VSOCK_HEADER_SIZE + 4, VSOCK_HEADER_SIZE + 6, 10, VSOCK_HEADER_SIZE + 100]) {
    assert.throws(
      () => decodeVsockPacket(h, payload, used),
      (e: unknown) => isFrontendError(e) && e.code === "PROTOCOL",
      `used ${used}`,
    );
  }
});

test("RST in answer to REQUEST: the connect is refused with ECONNREFUSED in the message", async () => {
  const { s } = stream("connecting");
  s.deliver(from(VsockOp.RST), new Uint8Array(0));
  await assert.rejects(
    s.established,
    (e: unknown) =>
      isFrontendError(e) &&
      e.code === "REFUSED" &&
      e.message === "vsock connect to port 1234 of CID 2: connection refused (ECONNREFUSED): the device answered RST",
  );
  assert.equal(s.state, "closed");
});

test("writes stay within the peer's credit and wait for CREDIT_UPDATE; received data returns credit once consumed", async () => {
  const { s, sent } = stream("connected", 64 * 1024);
  s.deliver(from(VsockOp.CREDIT_UPDATE, { bufAlloc: 100_000, fwdCnt: 0 }), new Uint8Array(0));
  const w = s.write(new Uint8Array(150_000));
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(
    sent.filter((p) => p.op === VsockOp.RW).map((p) => p.len),
    [65536, 34464],
    "100000 bytes of credit, in packets of at most 64 KiB",
  );
  assert.equal(sent.at(-1)?.op, VsockOp.CREDIT_REQUEST, "out of credit: ask for an update");
  s.deliver(from(VsockOp.CREDIT_UPDATE, { bufAlloc: 100_000, fwdCnt: 100_000 }), new Uint8Array(0));
  await w;
  assert.deepEqual(
    sent.filter((p) => p.op === VsockOp.RW).map((p) => p.len),
    [65536, 34464, 50000],
  );

  // 20 KiB received and consumed: a quarter of our 64 KiB buffer, so a CREDIT_UPDATE tells the peer.
  const it = s[Symbol.asyncIterator]();
  s.deliver(from(VsockOp.RW, { len: 20 * 1024 }), new Uint8Array(20 * 1024));
  s.deliver(from(VsockOp.RW, { len: 1 }), new Uint8Array(1));
  assert.equal((await it.next()).value?.byteLength, 20 * 1024);
  const before = sent.length;
  assert.equal((await it.next()).value?.byteLength, 1, "asking for the next chunk consumes the first");
  assert.deepEqual(
    sent.slice(before).map((p) => [p.op, p.fwdCnt]),
    [[VsockOp.CREDIT_UPDATE, 20 * 1024]],
  );
  s.deliver(from(VsockOp.SHUTDOWN, { flags: VsockShutdown.SEND }), new Uint8Array(0));
  assert.equal((await it.next()).done, true, "the peer's SHUTDOWN SEND ends reading once the data is consumed");
});

test("a peer that sends more than our buffer is reset; an RST without a shutdown fails reading with ECONNRESET", async () => {
  const greedy = stream("connected", 64 * 1024);
  greedy.s.deliver(from(VsockOp.RW, { len: 40_000 }), new Uint8Array(40_000));
  greedy.s.deliver(from(VsockOp.RW, { len: 40_000 }), new Uint8Array(40_000));
  assert.equal(greedy.s.state, "closed");
  assert.equal(greedy.sent.at(-1)?.op, VsockOp.RST);
  const chunks: number[] = [];
  await assert.rejects(
    (async () => {
      for await (const c of greedy.s) chunks.push(c.byteLength);
    })(),
    (e: unknown) => isFrontendError(e) && e.code === "PROTOCOL" && /against a credit of 65536/.test(e.message),
  );
  assert.deepEqual(chunks, [40_000], "what arrived within the credit is still read");

  const reset = stream("connected");
  reset.s.deliver(from(VsockOp.RST), new Uint8Array(0));
  await assert.rejects(reset.s[Symbol.asyncIterator]().next(), /connection reset by peer \(ECONNRESET\)/);
  await assert.rejects(reset.s.write(new Uint8Array(1)), (e: unknown) => isFrontendError(e) && e.code === "DISCONNECTED");
});

test("full shutdown by the peer: reading ends, writing fails with EPIPE, the stream resets and closes", async () => {
  const { s, sent } = stream("connected");
  s.deliver(from(VsockOp.SHUTDOWN, { flags: VsockShutdown.SEND | VsockShutdown.RCV }), new Uint8Array(0));
  assert.equal((await s[Symbol.asyncIterator]().next()).done, true);
  assert.equal(s.state, "closed");
  assert.equal(sent.at(-1)?.op, VsockOp.RST, "the side that completes the shutdown resets, as Linux does");
  await s.closed;
  await assert.rejects(s.write(new Uint8Array(1)), /broken pipe \(EPIPE\)|connection/);
});
