import { before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { EventFd, TransportError, Reactor } from "../src/index.js";

// The shared reactor owns two fds (epoll + wake eventfd) for the life of the process: create it
// before any test counts /proc/self/fd.
before(() => {
  Reactor.shared();
});

describe("EventFd", () => {
  test("signal then wait returns the summed counter", async () => {
    const e = EventFd.create();
    e.signal(2n);
    e.signal(3n);
    assert.equal(await e.wait(), 5n);
    e.close();
  });

  test("a wait pending on an idle eventfd completes when signalled later", async () => {
    const e = EventFd.create();
    const p = e.wait();
    await Promise.resolve();
    e.signal();
    assert.equal(await p, 1n);
    e.close();
  });

  test("close cancels a pending wait and releases the fds", async () => {
    const before = readdirSync("/proc/self/fd").length;
    const e = EventFd.create();
    const p = e.wait();
    e.close();
    await assert.rejects(p, (err: unknown) => err instanceof TransportError && err.code === "CLOSED");
    assert.equal(readdirSync("/proc/self/fd").length, before);
    assert.throws(() => e.signal(), TransportError);
  });
});
