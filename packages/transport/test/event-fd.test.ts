import { before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { EventFd, TransportError, Reactor } from "../src/index.js";
import { fdCount } from "./helpers/fds.js";
import { closeAfter } from "./helpers/lifetime.js";

// The shared reactor owns two fds (epoll + wake eventfd) for the life of the process: create it
// before any test counts /proc/self/fd.
before(() => {
  Reactor.shared();
});

describe("EventFd", () => {
  test("signal then wait returns the summed counter", async (t) => {
    const [e] = closeAfter(t, EventFd.create());
    e.signal(2n);
    e.signal(3n);
    assert.equal(await e.wait(), 5n);
  });

  test("a wait pending on an idle eventfd completes when signalled later", async (t) => {
    const [e] = closeAfter(t, EventFd.create());
    const p = e.wait();
    await Promise.resolve();
    e.signal();
    assert.equal(await p, 1n);
  });

  test("close cancels a pending wait and releases the fds", async (t) => {
    const before = fdCount();
    const [e] = closeAfter(t, EventFd.create());
    const p = e.wait();
    e.close();
    await assert.rejects(p, (err: unknown) => err instanceof TransportError && err.code === "CLOSED");
    assert.equal(fdCount(), before);
    assert.throws(() => e.signal(), TransportError);
  });
});
