import { before, describe, test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { Endpoint, RequestChannel, sendReply, socketPair, shouldReconnect, TransportError, Reactor } from "../src/index.js";
import { socketSys } from "../src/sys/socket.js";
import { turn } from "./helpers/event-loop.js";
import { expectCode } from "./helpers/expect-code.js";
import { fdCount, frame, pipe, rawWrite } from "./helpers/fds.js";
import { closeAfter } from "./helpers/lifetime.js";

/** Two connected endpoints, closed when test `t` ends. */
function pair(t: TestContext, opts: { maxFds?: number } = {}): { a: Endpoint; b: Endpoint } {
  const [x, y] = socketPair();
  const [a, b] = closeAfter(t, new Endpoint(x, opts), new Endpoint(y, opts));
  return { a, b };
}

// The shared reactor owns two fds (epoll + wake eventfd) for the life of the process: create it
// before any test counts /proc/self/fd.
before(() => {
  Reactor.shared();
});

describe("Endpoint", () => {
  test("round trip with payload and fds that work on the other side", async (t) => {
    const { a, b } = pair(t);
    const [r, w] = closeAfter(t, ...pipe());
    const payload = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);
    await a.send(3, 0x1, payload, [w.fd]);
    const m = await b.recv();
    closeAfter(t, ...m.fds);
    assert.equal(m.request, 3);
    assert.equal(m.flags, 1);
    assert.deepEqual([...m.payload], [...payload]);
    assert.equal(m.fds.length, 1);
    const got = m.fds[0];
    assert.ok(got);
    assert.notEqual(got.fd, w.fd);
    rawWrite(got.fd, new Uint8Array([42]));
    const buf = new Uint8Array(1);
    assert.equal(Number(socketSys().read(r.fd, buf, 1)), 1);
    assert.equal(buf[0], 42);
  });

  test("a frame split at every byte offset is reassembled", async (t) => {
    const [x, y] = socketPair();
    const [, b] = closeAfter(t, x, new Endpoint(y));
    const f = frame(7, 1, new Uint8Array([9, 8, 7, 6, 5, 4, 3, 2]));
    for (let k = 1; k < f.length; k++) {
      const p = b.recv();
      rawWrite(x.fd, f.subarray(0, k));
      // A macrotask between the pieces: the reader wakes to the first piece alone and must wait
      // for the rest (a microtask would not let it run in between).
      await turn();
      rawWrite(x.fd, f.subarray(k));
      const m = await p;
      assert.equal(m.request, 7);
      assert.deepEqual([...m.payload], [9, 8, 7, 6, 5, 4, 3, 2]);
    }
  });

  test("oversize size field is a typed error and latches", async (t) => {
    const [x, y] = socketPair();
    const [, b] = closeAfter(t, x, new Endpoint(y));
    rawWrite(x.fd, frame(1, 1, new Uint8Array(0), 0x10000));
    const err = await expectCode(b.recv(), "OVERSIZE", "broken");
    assert.equal(err.detail.actual, 0x10000);
    assert.ok(shouldReconnect(err));
    await expectCode(b.recv(), "OVERSIZE");
  });

  test("fds attached to the body are rejected and closed", async (t) => {
    const [x, y] = socketPair();
    const peerFd = x.fd;
    const [a, b] = closeAfter(t, new Endpoint(x), new Endpoint(y));
    const [r, w] = closeAfter(t, ...pipe());
    const before = fdCount();
    rawWrite(peerFd, frame(5, 1, new Uint8Array(0), 12));
    // recv() reads the header at once (synchronously), so the fds come in a read of body bytes only.
    const got = b.recv();
    await a.send(6, 1, new Uint8Array(0), [w.fd, r.fd]);
    await expectCode(got, "FDS_ON_BODY", "broken");
    assert.equal(fdCount(), before);
  });

  test("frames queued together are read ahead, and each read's fds go to the frame that carried them", async (t) => {
    const [x, y] = socketPair();
    const [a, b] = closeAfter(t, new Endpoint(x), new Endpoint(y));
    const [r1, w1] = closeAfter(t, ...pipe());
    const [r2, w2] = closeAfter(t, ...pipe());
    rawWrite(w1.fd, Uint8Array.of(0x11, 0x12));
    rawWrite(w2.fd, Uint8Array.of(0x22));
    // Four frames queued before the receiver reads; the kernel ends a read after the frame with fds.
    await a.send(1, 1, Uint8Array.of(1));
    await a.send(2, 1, Uint8Array.of(2, 2), [r1.fd]);
    await a.send(3, 1, new Uint8Array(0));
    await a.send(4, 1, Uint8Array.of(4, 4, 4, 4), [r2.fd, r1.fd]);
    await a.send(5, 1, Uint8Array.of(5));
    const seen: [number, number[], number[]][] = [];
    for (let i = 0; i < 5; i++) {
      const m = await b.recv();
      const marks = m.fds.map((f) => {
        const byte = new Uint8Array(1);
        const n = Number(socketSys().read(f.fd, byte, 1));
        f.close();
        return n === 1 ? byte[0]! : -1;
      });
      seen.push([m.request, [...m.payload], marks]);
    }
    assert.deepEqual(seen, [
      [1, [1], []],
      [2, [2, 2], [0x11]],
      [3, [], []],
      // The pipe behind r1 gave its first byte to frame 2's copy of it.
      [4, [4, 4, 4, 4], [0x22, 0x12]],
      [5, [5], []],
    ]);
  });

  test("a peer that sends its last frame and hangs up at once: the frame, then EOF (no wait for an edge that never comes)", async (t) => {
    for (const waitingFirst of [false, true]) {
      const [x, y] = socketPair();
      const [b] = closeAfter(t, new Endpoint(y));
      // Waiting first: the frame and the hang-up reach the reactor as one event, which wakes the
      // reader for the frame; the short read that takes it must not be trusted to mean "wait".
      const first = waitingFirst ? b.recv() : undefined;
      rawWrite(x.fd, frame(9, 1, Uint8Array.of(7, 7)));
      x.close();
      const m = await (first ?? b.recv());
      assert.deepEqual([m.request, [...m.payload]], [9, [7, 7]]);
      await expectCode(b.recv(), "EOF", "disconnected");
    }
  });

  test("a frame split anywhere is reassembled, with the next frame read ahead behind it", async (t) => {
    const [x, y] = socketPair();
    const [, b] = closeAfter(t, x, new Endpoint(y));
    const one = frame(7, 1, Uint8Array.of(1, 2, 3, 4, 5));
    const two = frame(8, 1, Uint8Array.of(9));
    const both = new Uint8Array([...one, ...two]);
    for (const cut of [1, 11, 12, 13, one.length, one.length + 5]) {
      const first = b.recv();
      rawWrite(x.fd, both.subarray(0, cut));
      await turn();
      rawWrite(x.fd, both.subarray(cut));
      const m1 = await first;
      const m2 = await b.recv();
      assert.deepEqual([m1.request, [...m1.payload], m2.request, [...m2.payload]], [7, [1, 2, 3, 4, 5], 8, [9]], `cut at ${cut}`);
    }
  });

  test("more fds than allowed and MSG_CTRUNC close every received fd", async (t) => {
    const [, w] = closeAfter(t, ...pipe());
    for (const [count, code] of [
      [9, "TOO_MANY_FDS"],
      [12, "CTRUNC"],
    ] as const) {
      const [x, y] = socketPair();
      const [a, b] = closeAfter(t, new Endpoint(x, { maxFds: 16 }), new Endpoint(y));
      const before = fdCount();
      await a.send(
        1,
        1,
        new Uint8Array(0),
        Array.from({ length: count }, () => w.fd),
      );
      await expectCode(b.recv(), code, "broken");
      assert.equal(fdCount(), before);
    }
  });

  test("peer EOF: disconnected at a boundary, partial mid-message", async (t) => {
    const { a, b } = pair(t);
    const p = b.recv();
    a.close();
    const err = await expectCode(p, "EOF", "disconnected");
    assert.ok(shouldReconnect(err));
    await expectCode(b.recv(), "EOF");
    const [x, y] = socketPair();
    const [, c] = closeAfter(t, x, new Endpoint(y));
    rawWrite(x.fd, frame(1, 1, new Uint8Array(8)).subarray(0, 15));
    x.close();
    await expectCode(c.recv(), "EOF", "partial");
  });

  test("send to a dead peer is a disconnected error", async (t) => {
    const { a, b } = pair(t);
    b.close();
    await expectCode(a.send(1, 1, new Uint8Array(8)), "SYSCALL", "disconnected");
  });

  test("a peer that closes with our bytes unread resets the connection: ECONNRESET is disconnected", async (t) => {
    const { a, b } = pair(t);
    await a.send(1, 1, new Uint8Array(8)); // b never reads it
    b.close(); // closing with unread data resets the connection
    const err = await expectCode(a.recv(), "SYSCALL", "disconnected");
    assert.equal(err.errno, 104, "ECONNRESET");
    assert.ok(shouldReconnect(err));
  });

  test("a second request while one is outstanding is BUSY (one per direction), the first still completes", async (t) => {
    const { a, b } = pair(t);
    const ch = new RequestChannel(a, { timeoutMs: 10_000 });
    const first = ch.request(1, new Uint8Array(0), { expectReply: true });
    await expectCode(ch.request(1, new Uint8Array(0), { expectReply: true }), "BUSY", "retry");
    const m = await b.recv();
    await sendReply(b, m.request, new Uint8Array(8));
    assert.equal((await first)?.request, 1);
  });

  test("close cancels an outstanding receive", async (t) => {
    const { b } = pair(t);
    const p = b.recv();
    b.close();
    await expectCode(p, "CLOSED");
  });

  test("no fd leaks across thousands of messages and error paths", async (t) => {
    const before = fdCount();
    const { a, b } = pair(t);
    const [r, w] = closeAfter(t, ...pipe());
    for (let i = 0; i < 2000; i++) {
      await a.send(i, 1, new Uint8Array(8), i % 2 === 0 ? [w.fd] : []);
      const m = await b.recv();
      for (const f of m.fds) f.close();
      assert.equal(m.request, i);
    }
    a.close();
    b.close();
    for (let i = 0; i < 200; i++) {
      const [x, y] = socketPair();
      const peerFd = x.fd;
      const [pa, pb] = closeAfter(t, new Endpoint(x, { maxFds: 16 }), new Endpoint(y, { fdsAllowed: () => 0 }));
      switch (i % 6) {
        case 0:
          await pa.send(
            1,
            1,
            new Uint8Array(0),
            Array.from({ length: 10 }, () => w.fd),
          );
          break;
        case 1:
          rawWrite(peerFd, frame(5, 1, new Uint8Array(0), 12));
          await pa.send(6, 1, new Uint8Array(0), [w.fd]);
          break;
        case 2:
          rawWrite(peerFd, frame(5, 1, new Uint8Array(0), 99999));
          break;
        case 3:
          // FDS_NOT_ALLOWED: a well-formed message whose request may carry no fds.
          await pa.send(1, 1, new Uint8Array(4), [w.fd, w.fd]);
          break;
        case 4:
          // EOF mid-message.
          rawWrite(peerFd, frame(2, 1, new Uint8Array(3), 8));
          pa.close();
          break;
        default:
          await pa.send(
            1,
            1,
            new Uint8Array(0),
            Array.from({ length: 14 }, () => w.fd),
          );
      }
      await assert.rejects(pb.recv(), TransportError);
      pa.close();
      pb.close();
    }
    // The request/reply paths: a reply with the wrong id (BAD_REPLY) carrying fds, a callback that
    // throws on a reply with fds, and a request that times out; every fd that arrived is closed.
    for (let i = 0; i < 150; i++) {
      const [x, y] = socketPair();
      const [requester, peer] = closeAfter(t, new Endpoint(x), new Endpoint(y));
      const ch = new RequestChannel(requester, { timeoutMs: 10_000 });
      const served = peer.recv().then(async (m) => {
        if (i % 3 === 2) return; // never answered: TIMEOUT
        await sendReply(peer, i % 3 === 0 ? m.request + 1 : m.request, new Uint8Array(8), [w.fd, w.fd]);
      });
      if (i % 3 === 0)
        await assert.rejects(ch.request(7, new Uint8Array(0), { expectReply: true }), (e: unknown) => e instanceof TransportError && e.code === "BAD_REPLY");
      else if (i % 3 === 1) {
        await assert.rejects(
          ch.requestWith(7, new Uint8Array(0), () => {
            throw new RangeError("not this reply");
          }),
          RangeError,
        );
      } else
        await assert.rejects(
          ch.request(7, new Uint8Array(0), { expectReply: true, timeoutMs: 1 }),
          (e: unknown) => e instanceof TransportError && e.code === "TIMEOUT",
        );
      await served;
      requester.close();
      peer.close();
    }
    r.close();
    w.close();
    assert.equal(fdCount(), before);
  });
});
