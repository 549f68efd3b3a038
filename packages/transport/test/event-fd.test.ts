import { before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Errno, EventFd, OwnedFd, TransportError, Reactor } from "../src/index.js";
import { EFD_CLOEXEC, EFD_NONBLOCK, eventFdIo, eventFdLegs, eventfdSys } from "../src/sys/eventfd.js";
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

describe("eventfd counter legs (bun:ffi under Bun, koffi everywhere)", () => {
  test("the runtime offers the legs it should, and EventFd uses bun:ffi only under Bun", () => {
    const bun = typeof (process.versions as Record<string, string | undefined>)["bun"] === "string";
    assert.deepEqual(eventFdLegs(), bun ? ["bun:ffi", "koffi"] : ["koffi"]);
    // Outside Bun, asking for bun:ffi falls back to koffi.
    assert.equal(eventFdIo("bun:ffi").leg, bun ? "bun:ffi" : "koffi");
  });

  for (const leg of eventFdLegs()) {
    test(`${leg}: writes add up, a read takes the counter, an empty counter is EAGAIN, 2^64-1 is EINVAL`, (t) => {
      const io = eventFdIo(leg);
      assert.equal(io.leg, leg);
      const fd = eventfdSys(0, EFD_CLOEXEC | EFD_NONBLOCK);
      assert.ok(fd >= 0);
      const owned = new OwnedFd(fd);
      t.after(() => owned.close());
      assert.equal(io.writeOne(fd), 8);
      assert.equal(io.write(fd, 0x1_0000_0000n), 8);
      assert.equal(io.writeOne(fd), 8);
      assert.equal(io.read(fd), 8);
      assert.equal(io.value(), 0x1_0000_0002n);
      assert.equal(io.read(fd), -1);
      assert.equal(io.errno(), Errno.EAGAIN);
      // The other leg sees the same counter (the two are interchangeable on one fd).
      const other = eventFdIo(leg === "koffi" ? "bun:ffi" : "koffi");
      assert.equal(other.write(fd, 7n), 8);
      assert.equal(io.read(fd), 8);
      assert.equal(io.value(), 7n);
      // eventfd(2): writing 0xffffffffffffffff fails with EINVAL, and the counter is unchanged.
      assert.equal(io.write(fd, 0xffff_ffff_ffff_ffffn), -1);
      assert.equal(io.errno(), Errno.EINVAL);
      assert.equal(io.read(fd), -1);
      assert.equal(io.errno(), Errno.EAGAIN);
    });
  }

  test("EventFd reports a failed write with its errno (EINVAL for 2^64-1) and stays usable", (t) => {
    const [e] = closeAfter(t, EventFd.create());
    e.signal();
    assert.equal(e.poll(), 1n);
    assert.equal(e.poll(), 0n);
    assert.throws(
      () => e.signal(0xffff_ffff_ffff_ffffn),
      (err: unknown) => err instanceof TransportError && err.code === "SYSCALL" && err.errno === Errno.EINVAL && err.syscall === "write",
    );
    e.signal(3n);
    assert.equal(e.poll(), 3n);
  });
});
