/**
 * The copy-saving paths: a payload sent in parts, a message lent to `recvWith` (views of the
 * receive buffer), and `RequestChannel.requestWith`, whose callback's errors do not end the channel.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { Endpoint, RequestChannel, TransportError, copyMessage, sendReply, socketPair } from "../src/index.js";
import { socketSys } from "../src/sys/socket.js";

const fdCount = () => readdirSync("/proc/self/fd").length;

function pair(maxPayload = 4096): { a: Endpoint; b: Endpoint } {
  const [x, y] = socketPair();
  return { a: new Endpoint(x, { maxPayload }), b: new Endpoint(y, { maxPayload }) };
}

function pipeFds(): [number, number] {
  const p = new Int32Array(2);
  assert.equal(socketSys().pipe2(p, 0o2000000), 0);
  return [p[0]!, p[1]!];
}

test("a payload in parts arrives as one payload; the size limit counts all parts", async () => {
  const { a, b } = pair(64);
  await a.send(7, 1, [new Uint8Array([1, 2]), new Uint8Array(0), new Uint8Array([3, 4, 5])]);
  const m = await b.recv();
  assert.deepEqual([...m.payload], [1, 2, 3, 4, 5]);
  assert.deepEqual([...m.frame.subarray(8, 12)], [5, 0, 0, 0], "header size = sum of the parts");
  await assert.rejects(a.send(7, 1, [new Uint8Array(40), new Uint8Array(25)]), (e: unknown) => e instanceof TransportError && e.code === "OVERSIZE");
  a.close();
  b.close();
});

test("recvWith lends views of the receive buffer; copyMessage keeps a message", async () => {
  const { a, b } = pair();
  await a.send(1, 1, new Uint8Array([9, 9, 9]));
  await a.send(2, 1, new Uint8Array([8, 8]));
  let lent: Uint8Array | undefined;
  const kept = await b.recvWith((m) => {
    lent = m.payload;
    return copyMessage(m);
  });
  assert.deepEqual([...kept.payload], [9, 9, 9]);
  const second = await b.recvWith((m) => [...m.payload]);
  assert.deepEqual(second, [8, 8]);
  assert.deepEqual([...lent!.subarray(0, 2)], [8, 8], "the lent view was reused by the next receive");
  assert.deepEqual([...kept.payload], [9, 9, 9], "the copy was not");
  a.close();
  b.close();
});

test("an error thrown by the recvWith callback closes the message's fds and leaves the endpoint usable", async () => {
  const { a, b } = pair();
  const before = fdCount();
  const [r, w] = pipeFds();
  await a.send(3, 1, new Uint8Array(8), [r, w]);
  socketSys().close(r);
  socketSys().close(w);
  await assert.rejects(b.recvWith(() => {
    throw new RangeError("not for me");
  }), RangeError);
  assert.equal(fdCount(), before, "both received fds were closed");
  assert.equal(b.error, undefined, "nothing latched");
  await a.send(4, 1);
  assert.equal((await b.recv()).request, 4);
  a.close();
  b.close();
});

test("closing the endpoint inside the callback keeps the lent buffer readable until it returns", async () => {
  // 256 KiB buffers: glibc serves them with mmap, so freeing one early would unmap the lent view.
  const { a, b } = pair(1 << 18);
  await a.send(5, 1, new Uint8Array([1, 2, 3, 4]));
  const sum = await b.recvWith((m) => {
    b.close();
    return m.payload.reduce((s, x) => s + x, 0);
  });
  assert.equal(sum, 10);
  assert.equal(b.closed, true);
  a.close();
});

test("requestWith: the reply is checked before the callback; the callback's error does not end the channel", async () => {
  const { a, b } = pair();
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
  await assert.rejects(ch.requestWith(11, new Uint8Array([1]), () => {
    throw new Error("reply not acceptable");
  }), /reply not acceptable/);
  assert.equal(ch.error, undefined, "a callback error leaves the channel open");
  await assert.rejects(ch.requestWith(12, new Uint8Array([1]), () => assert.fail("a bad reply never reaches the callback")), (e: unknown) => e instanceof TransportError && e.code === "BAD_REPLY");
  assert.equal((ch.error as TransportError | undefined)?.code, "BAD_REPLY", "a bad reply ends the channel"); // (the earlier assert narrowed the type)
  await served;
  b.close();
});
