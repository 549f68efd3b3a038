import { before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Endpoint, RequestChannel, socketPair, TransportError, Reactor } from "../src/index.js";

const PEER = fileURLToPath(new URL("./fixtures/peer.mjs", import.meta.url));

function fdCount(): number {
  return readdirSync("/proc/self/fd").length;
}

/** Spawn the peer with its socket end as fd 3; the parent's copy is closed right away. */
function startPeer(mode: string, opts: { maxFds?: number; timeoutMs?: number } = {}): { ep: Endpoint; exited: Promise<number | null> } {
  const [mine, theirs] = socketPair();
  const child = spawn(process.execPath, [PEER, mode], { stdio: ["ignore", "inherit", "inherit", theirs.fd] });
  theirs.close();
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  return { ep: new Endpoint(mine, opts.maxFds === undefined ? {} : { maxFds: opts.maxFds }), exited };
}

async function expectCode(p: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof TransportError, String(err));
    assert.equal(err.code, code);
    return true;
  });
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
    test(`${mode} -> ${code}, received fds closed, process stays up`, async () => {
      const before = fdCount();
      const { ep, exited } = startPeer(mode);
      await expectCode(ep.recv(), code);
      ep.close();
      assert.equal(await exited, 0);
      assert.equal(fdCount(), before);
    });
  }

  test("a header split across single-byte writes is reassembled", async () => {
    const { ep, exited } = startPeer("split");
    const m = await ep.recv();
    assert.equal(m.request, 9);
    assert.equal(m.flags, 5);
    assert.equal(m.payload[0], 0xaa);
    await expectCode(ep.recv(), "EOF");
    ep.close();
    assert.equal(await exited, 0);
  });

  test("request/reply: ack accepted, wrong reply id rejected and latched", async () => {
    const { ep, exited } = startPeer("echo-ack");
    const ch = new RequestChannel(ep, { timeoutMs: 10_000, replyAck: true });
    assert.equal(await ch.requestAck(4, new Uint8Array(8)), 0n);
    await expectCode(ch.requestAck(4, new Uint8Array(8)), "BAD_REPLY");
    await expectCode(ch.requestAck(4, new Uint8Array(8)), "BAD_REPLY");
    assert.ok(ep.closed, "a bad reply closes the endpoint");
    assert.equal(await exited, 0);
  });

  for (const flags of ["0x1", "0xd"]) {
    test(`a reply with flags ${flags} instead of exactly 0x5 is BAD_REPLY; the channel latches and closes`, async () => {
      const { ep, exited } = startPeer(`reply-flags-${flags}`);
      const ch = new RequestChannel(ep, { timeoutMs: 10_000 });
      await expectCode(ch.request(3, new Uint8Array(0), { expectReply: true }), "BAD_REPLY");
      assert.ok(ep.closed, "a bad reply closes the endpoint");
      await expectCode(ch.request(3, new Uint8Array(0), { expectReply: true }), "BAD_REPLY");
      assert.equal(await exited, 0);
    });
  }

  test("fds on a message that must carry none: FDS_NOT_ALLOWED, fds closed, the next message is read", async () => {
    const before = fdCount();
    const [mine, theirs] = socketPair();
    const child = spawn(process.execPath, [PEER, "fds-not-allowed"], { stdio: ["ignore", "inherit", "inherit", theirs.fd] });
    theirs.close();
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    const ep = new Endpoint(mine, { fdsAllowed: () => 0 });
    const during = fdCount();
    await expectCode(ep.recv(), "FDS_NOT_ALLOWED");
    assert.equal(fdCount(), during, "both fds that came were closed");
    const next = await ep.recv();
    assert.equal(next.request, 2, "the stream stayed in sync");
    ep.close();
    assert.equal(await exited, 0);
    assert.equal(fdCount(), before);
  });

  test("peer death rejects the pending request with a disconnected error", async () => {
    const { ep, exited } = startPeer("die");
    const ch = new RequestChannel(ep, { timeoutMs: 10_000 });
    await assert.rejects(ch.request(1, new Uint8Array(8), { expectReply: true }), (err: unknown) => {
      assert.ok(err instanceof TransportError);
      assert.equal(err.kind, "disconnected");
      return true;
    });
    await exited;
  });

  test("a request with no reply times out, closes the endpoint and latches", async () => {
    const [a, b] = socketPair();
    const ep = new Endpoint(a);
    const ch = new RequestChannel(ep, { timeoutMs: 10_000, replyAck: true });
    await expectCode(ch.requestAck(1, new Uint8Array(8), { timeoutMs: 20 }), "TIMEOUT");
    await expectCode(ch.requestAck(1, new Uint8Array(8)), "TIMEOUT");
    b.close();
  });
});
