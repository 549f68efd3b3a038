/**
 * The copy-saving paths: a payload sent in parts, a message lent to `recvWith` (views of the
 * receive buffer), and `RequestChannel.requestWith`, whose callback's errors do not end the channel.
 */
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { Endpoint, RequestChannel, TransportError, copyMessage, sendReply, socketPair } from "../src/index.js";
import { setNonBlocking, socketSys } from "../src/sys/socket.js";
import { turn } from "./helpers/event-loop.js";
import { fdCount, frame, pipe } from "./helpers/fds.js";
import { closeAfter } from "./helpers/lifetime.js";

/** Two connected endpoints with a payload limit, closed when test `t` ends. */
function pair(t: TestContext, maxPayload = 4096): { a: Endpoint; b: Endpoint } {
  const [x, y] = socketPair();
  const [a, b] = closeAfter(t, new Endpoint(x, { maxPayload }), new Endpoint(y, { maxPayload }));
  return { a, b };
}

test("a payload in parts arrives as one payload; the size limit counts all parts", async (t) => {
  const { a, b } = pair(t, 64);
  await a.send(7, 1, [new Uint8Array([1, 2]), new Uint8Array(0), new Uint8Array([3, 4, 5])]);
  const m = await b.recv();
  assert.deepEqual([...m.payload], [1, 2, 3, 4, 5]);
  assert.deepEqual([...m.frame.subarray(8, 12)], [5, 0, 0, 0], "header size = sum of the parts");
  await assert.rejects(a.send(7, 1, [new Uint8Array(40), new Uint8Array(25)]), (e: unknown) => e instanceof TransportError && e.code === "OVERSIZE");
});

test("recvWith lends views of the receive buffer; copyMessage keeps a message", async (t) => {
  const { a, b } = pair(t);
  await a.send(1, 1, new Uint8Array([9, 9, 9]));
  await a.send(2, 1, new Uint8Array([8, 8]));
  let lent: Uint8Array | undefined;
  const kept = await b.recvWith((m) => {
    lent = m.payload;
    return copyMessage(m);
  });
  assert.deepEqual([...kept.payload], [9, 9, 9]);
  const second = await b.recvWith((m) => ({ bytes: [...m.payload], buffer: m.payload.buffer }));
  assert.deepEqual(second.bytes, [8, 8]);
  assert.equal(lent!.buffer, second.buffer, "both lent views are of the one receive buffer");
  assert.notEqual(kept.payload.buffer, second.buffer, "the copy is not");
  // The next read reuses the buffer: the first lent view now shows the third frame.
  await a.send(3, 1, new Uint8Array([7, 7, 7]));
  await b.recvWith(() => undefined);
  assert.deepEqual([...lent!], [7, 7, 7], "the lent view was reused by a later receive");
  assert.deepEqual([...kept.payload], [9, 9, 9], "the copy was not");
});

test("an error thrown by the recvWith callback closes the message's fds and leaves the endpoint usable", async (t) => {
  const { a, b } = pair(t);
  const before = fdCount();
  const [r, w] = closeAfter(t, ...pipe());
  await a.send(3, 1, new Uint8Array(8), [r.fd, w.fd]);
  r.close();
  w.close();
  await assert.rejects(
    b.recvWith(() => {
      throw new RangeError("not for me");
    }),
    RangeError,
  );
  assert.equal(fdCount(), before, "both received fds were closed");
  assert.equal(b.error, undefined, "nothing latched");
  await a.send(4, 1);
  assert.equal((await b.recv()).request, 4);
});

test("closing the endpoint inside the callback keeps the lent buffer readable until it returns", async (t) => {
  // 256 KiB buffers: glibc serves them with mmap, so freeing one early would unmap the lent view.
  const { a, b } = pair(t, 1 << 18);
  await a.send(5, 1, new Uint8Array([1, 2, 3, 4]));
  const sum = await b.recvWith((m) => {
    b.close();
    return m.payload.reduce((s, x) => s + x, 0);
  });
  assert.equal(sum, 10);
  assert.equal(b.closed, true);
});

test("requestWith: the reply is checked before the callback; the callback's error does not end the channel", async (t) => {
  const { a, b } = pair(t);
  const ch = new RequestChannel(a, { timeoutMs: 5000 });
  const served = (async () => {
    for (let i = 0; i < 3; i++) {
      const m = await b.recv();
      // The third reply is wrong on purpose: another request id.
      await sendReply(b, i < 2 ? m.request : m.request + 1, new Uint8Array([m.payload[0]! * 2]));
    }
  })();
  const dst = new Uint8Array(1);
  await ch.requestWith(10, [new Uint8Array([21])], (reply) => void dst.set(reply.payload));
  assert.equal(dst[0], 42);
  await assert.rejects(
    ch.requestWith(11, new Uint8Array([1]), () => {
      throw new Error("reply not acceptable");
    }),
    /reply not acceptable/,
  );
  assert.equal(ch.error, undefined, "a callback error leaves the channel open");
  await assert.rejects(
    ch.requestWith(12, new Uint8Array([1]), () => assert.fail("a bad reply never reaches the callback")),
    (e: unknown) => e instanceof TransportError && e.code === "BAD_REPLY",
  );
  assert.equal((ch.error as TransportError | undefined)?.code, "BAD_REPLY", "a bad reply ends the channel"); // (the earlier assert narrowed the type)
  await served;
});

/** Bytes 0..n-1 of a repeating pattern seeded by `seed`. */
function pattern(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7 + seed) & 0xff;
  return b;
}

test("long parts are sent from their own memory; parts changed after send() returns still arrive as they were", async (t) => {
  const max = 1 << 17;
  const { a, b } = pair(t, max);
  // Many long and short parts mixed: more long parts than iovecs, so some are gathered and some copied.
  const parts = [pattern(16, 1), pattern(8192, 2), pattern(3, 3), pattern(4096, 4), pattern(5000, 5), pattern(4096, 6), pattern(10, 7)];
  const expected = Uint8Array.from(parts.flatMap((p) => [...p]));
  await a.send(9, 1, parts);
  const got = await b.recv();
  assert.deepEqual(got.payload, expected);
  // A send that must wait: fill the socket first (raw writes), then send and scribble over the
  // parts while it waits: what arrives must be what the parts held when send() was called.
  const [x, y] = closeAfter(t, ...socketPair());
  assert.equal(setNonBlocking(x.fd), 0);
  const chunk = pattern(4096, 8);
  let filled = 0;
  while (Number(socketSys().write(x.fd, chunk, chunk.length)) === chunk.length) filled += chunk.length;
  const [sender] = closeAfter(t, new Endpoint(x, { maxPayload: max }));
  const late = [pattern(16, 9), pattern(max - 16, 10)];
  const lateExpected = Uint8Array.from(late.flatMap((p) => [...p]));
  let done = false;
  const sent = sender.send(2, 1, late).then(() => (done = true));
  for (const p of late) p.fill(0xee);
  for (let i = 0; i < 5; i++) await turn();
  assert.equal(done, false, "the socket was full: the send is waiting");
  const [receiver] = closeAfter(t, new Endpoint(y, { maxPayload: max }));
  // The filler arrives as one "message" whose header is the pattern's first 12 bytes: drain it raw.
  const sink = new Uint8Array(filled);
  let drained = 0;
  while (drained < filled) {
    const n = Number(socketSys().read(y.fd, sink.subarray(drained), filled - drained));
    if (n > 0) drained += n;
    else await turn();
  }
  const last = await receiver.recv();
  assert.equal(last.request, 2);
  assert.deepEqual(last.payload, lateExpected, "the waiting send copied its parts before it first waited");
  await sent;
});

test("recvWith with a tail: a payload of the expected length ends straight in the caller's buffer", async (t) => {
  const { a, b } = pair(t, 1 << 17);
  const data = pattern(65536, 11);
  await a.send(11, 5, [pattern(16, 12), data]);
  const dst = new Uint8Array(65536);
  const seen = await b.recvWith(
    (m) => ({ tailed: m.tailed, head: [...m.payload], size: new DataView(m.frame.buffer, m.frame.byteOffset).getUint32(8, true) }),
    { bytes: dst, offset: 16 },
  );
  assert.equal(seen.tailed, true);
  assert.deepEqual(seen.head, [...pattern(16, 12)], "payload holds only the bytes before the tail");
  assert.equal(seen.size, 16 + 65536, "the header still counts the whole payload");
  assert.deepEqual(dst, data);
  // Another length: received as usual, the tail buffer untouched.
  const other = new Uint8Array(100).fill(0x55);
  await a.send(12, 5, pattern(16, 13));
  const short = await b.recvWith((m) => ({ tailed: m.tailed, len: m.payload.length }), { bytes: other, offset: 16 });
  assert.deepEqual(short, { tailed: false, len: 16 });
  assert.ok(other.every((x) => x === 0x55));
  // A tail into a subarray lands at its offset, arriving in pieces (a raw peer writes slowly).
  const [raw, mine] = socketPair();
  const [, ep] = closeAfter(t, raw, new Endpoint(mine, { maxPayload: 1 << 14 }));
  const big = new Uint8Array(9000).fill(1);
  const into = big.subarray(1000, 9000);
  const body = pattern(16 + into.length, 14);
  const whole = frame(13, 5, body);
  const got = ep.recvWith((m) => [m.tailed, ...m.payload.subarray(0, 2)], { bytes: into, offset: 16 });
  for (const [from, to] of [
    [0, 12],
    [12, 20],
    [20, 200],
    [200, whole.length],
  ] as const) {
    const piece = whole.slice(from, to);
    assert.equal(Number(socketSys().write(raw.fd, piece, piece.length)), piece.length);
    await turn();
  }
  assert.deepEqual(await got, [true, body[0], body[1]]);
  assert.deepEqual(into, body.subarray(16));
  assert.ok(
    big.subarray(0, 1000).every((v) => v === 1),
    "bytes before the subarray untouched",
  );
});

test("a request's timeout holds even when an earlier request armed a longer one", async (t) => {
  const { a, b } = pair(t);
  const ch = new RequestChannel(a, { timeoutMs: 60_000 });
  const served = (async () => {
    const m = await b.recv();
    await sendReply(b, m.request, new Uint8Array(8));
    await b.recv(); // never answered
  })();
  await ch.request(1, new Uint8Array(0), { expectReply: true }); // arms the channel's timer for 60 s
  const t0 = performance.now();
  await assert.rejects(
    ch.request(2, new Uint8Array(0), { expectReply: true, timeoutMs: 50 }),
    (e: unknown) => e instanceof TransportError && e.code === "TIMEOUT",
  );
  assert.ok(performance.now() - t0 < 5000, "timed out on its own deadline, not the earlier 60 s one");
  assert.equal((ch.error as TransportError | undefined)?.code, "TIMEOUT", "latched");
  await assert.rejects(ch.request(3, new Uint8Array(0), { expectReply: true }), (e: unknown) => e instanceof TransportError && e.code === "TIMEOUT");
  b.close();
  await served.catch(() => undefined);
});

test("requestAck reads the status from the lent reply: failure codes pass, fds on an ack are closed, a wrong size is BAD_REPLY", async (t) => {
  const { a, b } = pair(t);
  const ch = new RequestChannel(a, { timeoutMs: 10_000, replyAck: true });
  const before = fdCount();
  const [r, w] = pipe();
  const served = (async () => {
    const status = new Uint8Array(8);
    new DataView(status.buffer).setBigUint64(0, 0xfffffffffffffff2n, true);
    let m = await b.recv();
    await sendReply(b, m.request, status);
    m = await b.recv();
    await sendReply(b, m.request, new Uint8Array(8), [r.fd, w.fd]); // an ack that carries fds
    m = await b.recv();
    await sendReply(b, m.request, new Uint8Array(4)); // 4 bytes, not a u64
  })();
  assert.equal(await ch.requestAck(20, new Uint8Array(8)), 0xfffffffffffffff2n, "a non-zero status is returned as sent");
  assert.equal(await ch.requestAck(21, new Uint8Array(8)), 0n);
  r.close();
  w.close();
  assert.equal(fdCount(), before, "the fds that came with the ack were closed");
  await assert.rejects(
    ch.requestAck(22, new Uint8Array(8)),
    (e: unknown) => e instanceof TransportError && e.code === "BAD_REPLY" && /0x4 bytes/.test(e.message),
  );
  assert.equal(ch.error?.code, "BAD_REPLY", "a wrong-size ack ends the channel");
  await served;
});
