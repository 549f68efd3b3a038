import { before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { closeSync, mkdtempSync, openSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Endpoint, EventFd, OwnedFd, Reactor, SPIN_FLOOR_MICROS, TransportError, shouldReconnect, socketPair } from "../src/index.js";
import { eventfdSys, EFD_CLOEXEC } from "../src/sys/eventfd.js";
import { fdCount } from "./helpers/fds.js";
import { closeAfter, spawnFixture } from "./helpers/lifetime.js";

const EXIT = fileURLToPath(new URL("./fixtures/exit.mjs", import.meta.url));

before(() => {
  Reactor.shared();
});

describe("Reactor", () => {
  test("many waits at once need one worker: only the last of 16 eventfds is signalled and it completes", async (t) => {
    // One blocked native call per wait would need 16 threads (Node's pool has 4): the 16th wait
    // would never start. The reactor serves every fd from one epoll_wait.
    const fds = closeAfter(t, ...Array.from({ length: 16 }, () => EventFd.create()));
    const waits = fds.map((f) => f.wait());
    const last = fds.at(-1);
    assert.ok(last);
    last.signal(7n);
    assert.equal(await waits.at(-1), 7n);
    for (const f of fds) f.close();
    const rejected = await Promise.allSettled(waits.slice(0, -1));
    assert.ok(rejected.every((r) => r.status === "rejected" && r.reason instanceof TransportError && r.reason.code === "CLOSED"));
  });

  test("a blocking eventfd from a peer is made non-blocking: poll() returns at once", (t) => {
    const raw = eventfdSys(0, EFD_CLOEXEC);
    assert.ok(raw >= 0);
    const [e] = closeAfter(t, new EventFd(new OwnedFd(raw)));
    assert.equal(e.poll(), 0n);
    e.signal(2n);
    assert.equal(e.poll(), 2n);
  });

  test("an fd epoll cannot watch (a regular file) is a typed SYSCALL error and is closed", () => {
    const dir = mkdtempSync(join(tmpdir(), "vhostkit-reactor-"));
    try {
      const before = fdCount();
      const fd = openSync(join(dir, "f"), "w");
      assert.throws(
        () => new EventFd(new OwnedFd(fd)),
        (err: unknown) => err instanceof TransportError && err.code === "SYSCALL" && err.syscall === "epoll_ctl" && err.errno === 1,
      );
      assert.equal(fdCount(), before, "the wrapped fd was closed on the error path");
      assert.throws(() => closeSync(fd), "already closed");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("fds on a message whose policy allows none: FDS_NOT_ALLOWED, fds closed, stream stays usable", async (t) => {
    const [x, y] = socketPair();
    const [a, b, e] = closeAfter(t, new Endpoint(x), new Endpoint(y, { fdsAllowed: (request) => (request === 12 ? 1 : 0) }), EventFd.create());
    const before = fdCount();
    await a.send(3, 1, new Uint8Array(0), [e.fd]);
    await a.send(12, 1, new Uint8Array(8), [e.fd]);
    await assert.rejects(b.recv(), (err: unknown) => {
      assert.ok(err instanceof TransportError);
      assert.equal(err.code, "FDS_NOT_ALLOWED");
      assert.equal(shouldReconnect(err), false);
      return true;
    });
    const m = await b.recv();
    for (const f of m.fds) f.close();
    assert.equal(m.request, 12);
    assert.equal(m.fds.length, 1);
    assert.equal(fdCount(), before);
  });

  test("a process whose waits were all closed exits by itself", async (t) => {
    const p = spawnFixture(t, EXIT, ["idle-after-close"]);
    assert.deepEqual(await p.exited, { code: 0, signal: null }, p.output());
  });

  test("process.exit() while a wait is parked exits promptly", async (t) => {
    const p = spawnFixture(t, EXIT, ["exit-while-waiting"]);
    assert.deepEqual(await p.exited, { code: 3, signal: null }, p.output());
  });

  // Under Bun: koffi `.async` with and without the spin; under Node both use uv_poll.
  for (const options of [{ spinMicros: 0 }, { spinMicros: 1000 }]) {
    test(`a private reactor (${JSON.stringify(options)}) serves request/reply between two endpoints`, async (t) => {
      const [x, y] = socketPair();
      const [reactor] = closeAfter(t, new Reactor(options));
      const [a, b] = closeAfter(t, new Endpoint(x, { reactor }), new Endpoint(y, { reactor }));
      const server = (async () => {
        for (let i = 0; i < 200; i++) {
          const m = await b.recv();
          await b.send(m.request, 0x5, m.payload);
        }
      })();
      for (let i = 0; i < 200; i++) {
        const p = a.recv();
        await a.send(i, 0x1, new Uint8Array([i & 0xff, 1, 2, 3, 4, 5, 6, 7]));
        const m = await p;
        assert.equal(m.request, i);
        assert.equal(m.payload[0], i & 0xff);
      }
      await server;
      assert.equal(reactor.size, 2);
      a.close();
      b.close();
      assert.equal(reactor.size, 0);
      await reactor.close();
      assert.throws(
        () => reactor.watch(0),
        (err: unknown) => err instanceof TransportError && err.code === "CLOSED",
      );
    });
  }

  test("adaptive spin (Bun): the budget doubles when events come soon after a spin gave up, halves after long idle waits", async (t) => {
    // A 50 ms maximum: a timer that a loaded machine fires late still counts as "soon after".
    const [reactor] = closeAfter(t, new Reactor({ spinMicros: 50_000 }));
    const [e] = closeAfter(t, new EventFd(new OwnedFd(eventfdSys(0, EFD_CLOEXEC)), reactor));
    const waitFor = async (ms: number) => {
      const p = e.wait();
      // Armed from an immediate queued after the wait's first spin slice, so the timer cannot fire
      // before the spin started (on a loaded machine a due timer may run before a due immediate).
      setImmediate(() => setTimeout(() => e.signal(), ms));
      await p;
    };
    if (typeof Bun === "undefined") {
      // Node's event loop watches the epoll fd itself: no spinning, nothing to adapt.
      await waitFor(1);
      assert.equal(reactor.spinBudgetMicros, 0);
    } else {
      assert.equal(reactor.spinBudgetMicros, SPIN_FLOOR_MICROS, "starts at the floor");
      // A 1 ms timer: while the budget is shorter, the spin gives up first and the event comes soon
      // after (within the 50 ms maximum), so the budget doubles; once it covers 1 ms the spin itself
      // catches the event (timers run between spin slices) and the budget stays. On a loaded machine
      // the timer can fire before the first spin slice runs; that wait is caught by the spin and
      // leaves the budget as it was, so a step is retried until one wait really came after a spin.
      const step = async (): Promise<number> => {
        const was = reactor.spinBudgetMicros;
        for (let i = 0; i < 20 && reactor.spinBudgetMicros === was; i++) await waitFor(1);
        return reactor.spinBudgetMicros;
      };
      assert.equal(await step(), 2 * SPIN_FLOOR_MICROS);
      assert.equal(await step(), 4 * SPIN_FLOOR_MICROS);
      // Then it grows until the spin covers the gap and stays (three waits in a row at one value).
      // On a loaded machine the 1 ms gap stretches, so it may settle higher, never above the maximum;
      // and a late spin slice can catch a few events in a row below 1 ms, which is not settling.
      const seen: number[] = [];
      const settledAbove = (floor: number) => seen.length >= 3 && (seen.at(-1) ?? 0) >= floor && seen.slice(-3).every((b) => b === seen.at(-1));
      for (let i = 0; i < 60 && !settledAbove(1000); i++) {
        await waitFor(1);
        seen.push(reactor.spinBudgetMicros);
      }
      const settled = seen.at(-1) ?? 0;
      assert.ok(settled >= 1000 && settled <= 50_000, `grew to cover the 1 ms gap, within the maximum (${seen.join(", ")})`);
      assert.deepEqual(seen.slice(-3), [settled, settled, settled], `and stays there while the spin catches the events (${seen.join(", ")})`);
      // Waits far longer than the maximum: the peer is idle, spinning is wasted.
      const before = reactor.spinBudgetMicros;
      await waitFor(150);
      assert.equal(reactor.spinBudgetMicros, Math.max(SPIN_FLOOR_MICROS, before / 2), "halved after an idle wait");
    }
    e.close();
    await reactor.close();
    const [off] = closeAfter(t, new Reactor({ spinMicros: 0 }));
    assert.equal(off.spinBudgetMicros, 0, "spinMicros 0 disables spinning");
  });

  test("idle costs no CPU: four receives parked for a second use a few milliseconds at most", async (t) => {
    const pairs = Array.from({ length: 4 }, () => closeAfter(t, ...socketPair()));
    const eps = closeAfter(t, ...pairs.map(([a]) => new Endpoint(a)));
    const parked = eps.map((ep) => ep.recv().catch(() => undefined));
    // The second is the measurement window, not a wait for something: the receives park at once, and
    // the spin before an idle wait (at most 500 µs by default) is within the budget below.
    const t0 = process.cpuUsage();
    const w0 = performance.now();
    await new Promise((r) => setTimeout(r, 1000));
    const used = process.cpuUsage(t0);
    const wall = performance.now() - w0;
    const cpuMs = (used.user + used.system) / 1000;
    // A busy poll would use about the whole second; timers and GC ticks stay far below 10%.
    assert.ok(cpuMs < wall * 0.1, `idle waits used ${cpuMs.toFixed(1)} ms of CPU in ${wall.toFixed(0)} ms`);
    for (const ep of eps) ep.close();
    for (const [, b] of pairs) b.close();
    await Promise.all(parked);
  });

  test("closing a private reactor rejects its pending waits and releases its fds", async (t) => {
    const before = fdCount();
    const [reactor] = closeAfter(t, new Reactor());
    const [e] = closeAfter(t, new EventFd(new OwnedFd(eventfdSys(0, EFD_CLOEXEC)), reactor));
    const p = e.wait();
    await new Promise((r) => setImmediate(r));
    const released = reactor.close();
    await assert.rejects(p, (err: unknown) => err instanceof TransportError && err.code === "CLOSED");
    e.close();
    await released;
    assert.equal(fdCount(), before);
  });

  test("watch count returns to its start after endpoints and eventfds close", (t) => {
    const r = Reactor.shared();
    const start = r.size;
    const [x, y] = socketPair();
    const [a, b, e] = closeAfter(t, new Endpoint(x), new Endpoint(y), EventFd.create());
    assert.equal(r.size, start + 3);
    a.close();
    b.close();
    e.close();
    assert.equal(r.size, start);
  });
});
