import { before, describe, test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { Endpoint, RequestChannel, socketPair, TransportError, Reactor, type EndpointOptions } from "../src/index.js";
import { expectCode } from "./helpers/expect-code.js";
import { fdCount, fdsTo } from "./helpers/fds.js";
import { closeAfter, spawnFixture } from "./helpers/lifetime.js";

const PEER = fileURLToPath(new URL("./fixtures/peer.mjs", import.meta.url));

/**
 * Spawn the peer with its socket end as fd 3 (the parent's copy is closed right away); our endpoint
 * is closed and the peer killed when test `t` ends. `exited` resolves with the peer's exit code.
 */
function startPeer(t: TestContext, mode: string, options: EndpointOptions = {}): { ep: Endpoint; exited: Promise<number | null> } {
  const [mine, theirs] = socketPair();
  const peer = spawnFixture(t, PEER, [mode], [theirs.fd]);
  theirs.close();
  const [ep] = closeAfter(t, new Endpoint(mine, options));
  return { ep, exited: peer.exited.then((e) => e.code) };
}

// The shared reactor owns two fds (epoll + wake eventfd) for the life of the process: create it
// before any test counts /proc/self/fd.
before(() => {
  Reactor.shared();
});

describe("misbehaving peer in a second process", () => {
  for (const [mode, code] of [
    ["garbage", "OVERSIZE"],
    ["oversize", "OVERSIZE"],
    ["fds-on-body", "FDS_ON_BODY"],
    ["too-many-fds", "CTRUNC"],
    ["mid-message", "EOF"],
  ] as const) {
    test(`${mode} -> ${code}, received fds closed, process stays up`, async (t) => {
      const before = fdCount();
      const { ep, exited } = startPeer(t, mode);
      await expectCode(ep.recv(), code);
      ep.close();
      assert.equal(await exited, 0);
      assert.equal(fdCount(), before);
    });
  }

  test("a header split across single-byte writes is reassembled", async (t) => {
    const { ep, exited } = startPeer(t, "split");
    const m = await ep.recv();
    assert.equal(m.request, 9);
    assert.equal(m.flags, 5);
    assert.equal(m.payload[0], 0xaa);
    await expectCode(ep.recv(), "EOF");
    ep.close();
    assert.equal(await exited, 0);
  });

  test("request/reply: ack accepted, wrong reply id rejected and latched", async (t) => {
    const { ep, exited } = startPeer(t, "echo-ack");
    const ch = new RequestChannel(ep, { timeoutMs: 10_000, replyAck: true });
    assert.equal(await ch.requestAck(4, new Uint8Array(8)), 0n);
    await expectCode(ch.requestAck(4, new Uint8Array(8)), "BAD_REPLY");
    await expectCode(ch.requestAck(4, new Uint8Array(8)), "BAD_REPLY");
    assert.ok(ep.closed, "a bad reply closes the endpoint");
    assert.equal(await exited, 0);
  });

  for (const flags of ["0x1", "0xd"]) {
    test(`a reply with flags ${flags} instead of exactly 0x5 is BAD_REPLY; the channel latches and closes`, async (t) => {
      const { ep, exited } = startPeer(t, `reply-flags-${flags}`);
      const ch = new RequestChannel(ep, { timeoutMs: 10_000 });
      await expectCode(ch.request(3, new Uint8Array(0), { expectReply: true }), "BAD_REPLY");
      assert.ok(ep.closed, "a bad reply closes the endpoint");
      await expectCode(ch.request(3, new Uint8Array(0), { expectReply: true }), "BAD_REPLY");
      assert.equal(await exited, 0);
    });
  }

  test("fds on a message that must carry none: FDS_NOT_ALLOWED, fds closed, the next message is read", async (t) => {
    const before = fdCount();
    const { ep, exited } = startPeer(t, "fds-not-allowed", { fdsAllowed: () => 0 });
    // The peer sends two /dev/null fds and exits: count those, not every fd (its stdio pipes close when it exits).
    const nulls = fdsTo("/dev/null");
    await expectCode(ep.recv(), "FDS_NOT_ALLOWED");
    assert.equal(fdsTo("/dev/null"), nulls, "both fds that came were closed");
    const next = await ep.recv();
    assert.equal(next.request, 2, "the stream stayed in sync");
    ep.close();
    assert.equal(await exited, 0);
    assert.equal(fdCount(), before);
  });

  test("peer death rejects the pending request with a disconnected error", async (t) => {
    const { ep, exited } = startPeer(t, "die");
    const ch = new RequestChannel(ep, { timeoutMs: 10_000 });
    await assert.rejects(ch.request(1, new Uint8Array(8), { expectReply: true }), (err: unknown) => {
      assert.ok(err instanceof TransportError);
      assert.equal(err.kind, "disconnected");
      return true;
    });
    await exited;
  });

  test("a request with no reply times out, closes the endpoint and latches", async (t) => {
    const [a, b] = socketPair();
    const [ep] = closeAfter(t, new Endpoint(a), b);
    const ch = new RequestChannel(ep, { timeoutMs: 10_000, replyAck: true });
    await expectCode(ch.requestAck(1, new Uint8Array(8), { timeoutMs: 20 }), "TIMEOUT");
    await expectCode(ch.requestAck(1, new Uint8Array(8)), "TIMEOUT");
  });

  test("while one connection keeps the spin busy on its own reads, another endpoint's hang-up is still seen", async (t) => {
    // A budget far above a round trip: once grown, the spin rarely gives up (which polls the set).
    const [reactor] = closeAfter(t, new Reactor({ spinMicros: 200_000 }));
    const { ep, exited } = startPeer(t, "echo", { reactor });
    const [x, y] = socketPair();
    const [a, b] = closeAfter(t, new Endpoint(x, { reactor }), new Endpoint(y, { reactor }));
    let hungUp = false;
    void b.hangup().then(() => {
      hungUp = true;
    });
    // Only the receive from the echo peer waits: the spin polls with its reads. The hang-up's edge,
    // raised after 500 round trips, waits in the epoll set; it must not wait for the stream to pause.
    let n = 0;
    for (; !hungUp && n < 100_000; n++) {
      if (n === 500) a.close();
      await ep.send(1, 0x1, new Uint8Array([n & 0xff]));
      const m = await ep.recv();
      assert.equal(m.payload[0], n & 0xff);
    }
    // The set is polled at least every millisecond of spinning; 4 500 round trips take far longer.
    assert.ok(hungUp && n <= 5000, `the hang-up was seen ${n - 500} round trips after it came`);
    ep.close();
    assert.equal(await exited, 0);
  });
});
