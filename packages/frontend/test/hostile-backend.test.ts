import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { closeSync, fstatSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Endpoint, Reactor, socketPair } from "@vhostkit/transport";
import { SYNTHETIC_USER_BASE } from "@vhostkit/regions";
import { Guest, isFrontendError, RawDriver, runConformance, type BackendRequestOutcome, type Device, type GuestOptions } from "../src/index.js";

const FIXTURE = fileURLToPath(new URL("./fixtures/hostile-backend.mjs", import.meta.url));

function fdCount(): number {
  return readdirSync("/proc/self/fd").length;
}

/** VMAs of this process whose backing file name contains `name`. */
function vmasNamed(name: string): { start: bigint; end: bigint }[] {
  return readFileSync("/proc/self/maps", "utf8")
    .split("\n")
    .filter((l) => l.includes(name))
    .map((l) => {
      const [s, e] = (l.split(" ")[0] as string).split("-");
      return { start: BigInt(`0x${s}`), end: BigInt(`0x${e}`) };
    });
}

interface Peer {
  readonly endpoint: Endpoint;
  /** Resolves with the next report matching `pred`. */
  next(pred: (o: Record<string, unknown>) => boolean): Promise<Record<string, unknown>>;
  /** Every report so far. */
  readonly lines: Record<string, unknown>[];
  /** Resolves with the exit code once the child is gone and the control socket is closed. */
  readonly exited: Promise<number | null>;
  send(command: string): void;
  /** Kills the back-end if it still runs, and resolves once it is gone (see {@link Peer.exited}). */
  stop(): Promise<void>;
}

/**
 * Starts the hostile back-end: fd 3 = its end of the vhost-user socketpair, fd 4 = a control
 * socketpair (reports and commands as frames). Its stdout and stderr go to the shared output file
 * ({@link output}), not to this process's stdio: no fd is created here per back-end (Bun's stdio
 * pipes close on their own schedule), so fd counts before the start and after the exit compare
 * exactly. It is killed if this process exits first.
 */
function startPeer(mode: string, ...args: string[]): Peer {
  const [mine, theirs] = socketPair();
  const [ctlMine, ctlTheirs] = socketPair();
  const out = output.fd();
  const child = spawn(process.execPath, [FIXTURE, mode, ...args], { stdio: ["ignore", out, out, theirs.fd, ctlTheirs.fd] });
  theirs.close();
  ctlTheirs.close();
  const kill = (): void => void child.kill("SIGKILL");
  process.once("exit", kill);
  child.once("exit", () => process.off("exit", kill));
  const ctl = new Endpoint(ctlMine);
  const lines: Record<string, unknown>[] = [];
  const waiters: { pred: (o: Record<string, unknown>) => boolean; resolve: (o: Record<string, unknown>) => void }[] = [];
  const reports = (async () => {
    for (;;) {
      let m;
      try {
        m = await ctl.recv();
      } catch {
        return; // EOF: the child exited
      }
      const o = JSON.parse(new TextDecoder().decode(m.payload)) as Record<string, unknown>;
      lines.push(o);
      const i = waiters.findIndex((w) => w.pred(o));
      if (i >= 0) waiters.splice(i, 1)[0]?.resolve(o);
    }
  })();
  const code = new Promise<number | null>((r) => child.once("close", (c) => r(c)));
  const exited = Promise.all([code, reports]).then(([c]) => {
    ctl.close();
    return c;
  });
  const endpoint = new Endpoint(mine);
  return {
    endpoint,
    lines,
    exited,
    next: (pred) => {
      const seen = lines.find(pred);
      return seen !== undefined ? Promise.resolve(seen) : new Promise((resolve) => waiters.push({ pred, resolve }));
    },
    send: (command) => void ctl.send(1, 1, new TextEncoder().encode(command)),
    async stop() {
      endpoint.close(); // a no-op once a device owns it and closed it
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exited;
    },
  };
}

/**
 * Runs `body` with a fresh guest and a `start` that starts hostile back-ends; afterwards, whatever
 * happened, the guest is closed and every back-end started is stopped (killed if still running).
 */
async function withGuest(options: GuestOptions, body: (guest: Guest, start: typeof startPeer) => Promise<void>): Promise<void> {
  const guest = new Guest(options);
  const peers: Peer[] = [];
  const from = output.size();
  try {
    await body(guest, (mode, ...args) => {
      const peer = startPeer(mode, ...args);
      peers.push(peer);
      return peer;
    });
  } catch (err) {
    output.show(from);
    throw err;
  } finally {
    await guest.close();
    await Promise.all(peers.map((p) => p.stop()));
  }
}

/**
 * One file in a fresh temporary directory that every back-end's stdout and stderr append to;
 * opened before the first test counts fds, removed after the last. A failed test shows what the
 * back-ends wrote meanwhile.
 */
const output = (() => {
  let dir: string | undefined;
  let fd: number | undefined;
  return {
    open(): void {
      dir = mkdtempSync(join(tmpdir(), "vhostkit-hostile-"));
      fd = openSync(join(dir, "backends.log"), "a+");
    },
    fd(): number {
      if (fd === undefined) throw new Error("output file not open");
      return fd;
    },
    size(): number {
      return fd === undefined ? 0 : fstatSync(fd).size;
    },
    /** Writes what the back-ends wrote since `from` (bytes) to this process's stderr. */
    show(from: number): void {
      const n = this.size() - from;
      if (fd === undefined || n <= 0) return;
      const text = Buffer.alloc(n);
      readSync(fd, text, 0, n, from);
      process.stderr.write(`hostile back-end output:\n${text.toString()}`);
    },
    close(): void {
      if (fd !== undefined) closeSync(fd);
      if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
      fd = dir = undefined;
    },
  };
})();

// The shared reactor owns two fds (epoll + wake eventfd) for the life of the process, and the
// back-ends' output file one: open them before any test counts /proc/self/fd.
before(() => {
  Reactor.shared();
  output.open();
});

after(() => output.close());

/**
 * Back-end B (in `modeB`) started first, then A ("quiet"), which maps a blob at once; returns when
 * the mapping's propagation to B was answered.
 */
async function mappedIntoB(guest: Guest, start: typeof startPeer, modeB: string): Promise<{ a: Peer; b: Peer; devA: Device; devB: Device }> {
  const b = start(modeB);
  const devB = await guest.addDevice({ endpoint: b.endpoint, timeoutMs: 10_000 });
  await RawDriver.attach(devB);
  const a = start("quiet");
  const devA = await guest.addDevice({ endpoint: a.endpoint, timeoutMs: 10_000 });
  assert.equal((await a.next((o) => o.phase === "mapped")).status, 0);
  await devB.propagationSettled();
  return { a, b, devA, devB };
}

describe("hostile back-end in a second process", () => {
  for (const [mode, code] of [
    ["wrong-size", "PROTOCOL"],
    ["wrong-id", "PROTOCOL"],
    ["wrong-flags", "PROTOCOL"],
    ["too-many-fds", "PROTOCOL"],
    ["no-version-1", "NEGOTIATION"],
    ["bad-shmem-count", "BAD_SHMEM_CONFIG"],
    ["bad-shmem-nregions", "BAD_SHMEM_CONFIG"],
    ["bad-shmem-unaligned", "BAD_SHMEM_CONFIG"],
  ] as const) {
    test(`${mode}: negotiation rejected with ${code}, no fd or mapping leaked`, () =>
      withGuest({}, async (guest, start) => {
        const fds = fdCount();
        const peer = start(mode);
        await assert.rejects(guest.addDevice({ endpoint: peer.endpoint, timeoutMs: 10_000 }), (err: unknown) => {
          assert.ok(isFrontendError(err), String(err));
          assert.equal(err.code, code, err.message);
          return true;
        });
        assert.equal(await peer.exited, 0);
        assert.equal(fdCount(), fds);
        assert.equal(guest.devices.length, 0);
      }));
  }

  test("SHMEM_MAP/UNMAP abuse: each refused with a failure reply, nothing leaks, the front-end keeps serving", () =>
    withGuest({}, async (guest, start) => {
      const fds = fdCount();
      const outcomes: BackendRequestOutcome[] = [];
      const peer = start("shmem");
      const device: Device = await guest.addDevice({ endpoint: peer.endpoint, timeoutMs: 10_000, onBackendRequest: (o) => outcomes.push(o) });
      assert.deepEqual(
        device.info.shmem.map((r) => [r.shmid, r.size]),
        [
          [1, 0x100_0000n],
          [3, 0x1_0000n],
        ],
      );
      const raw = await RawDriver.attach(device, { queues: [0] });
      assert.ok(raw.queue(0));

      const many = await peer.next((o) => o.phase === "many-mapped");
      await device.propagationSettled();
      assert.deepEqual([many.ok, many.failed], [256, 2000 - 256], "the per-region cap stops the flood; every request is answered");
      // 256 tiny mappings + the read-only one of shmid 3, each holding its own fd.
      assert.equal(vmasNamed("memfd:vhostkit-hostile (deleted)").length, 256);
      assert.equal(vmasNamed("memfd:vhostkit-hostile-small").length, 1);
      assert.equal(device.sharedMemory?.mappingCount, 257);
      // Eager propagation: the back-end offers 8 slots (RAM takes 1, the read-only mapping 1), so
      // 6 tiny mappings made it into its table, each with a dup of its fd held by the front-end.
      const fdsMany = fdCount();
      peer.send("go");
      const done = await peer.next((o) => o.phase === "done");
      await device.propagationSettled();
      assert.equal(done.unmapped, 256);
      assert.equal(vmasNamed("memfd:vhostkit-hostile (deleted)").length, 0);
      assert.equal(fdCount(), fdsMany - 256 - 6);

      const steps = peer.lines.filter((o) => typeof o.step === "string");
      assert.equal(steps.length, 33);
      for (const s of steps) {
        if (s.expect === "ok") assert.equal(s.status, 0, `${String(s.step)}: ${JSON.stringify(s)}`);
        else assert.notEqual(s.status, 0, `${String(s.step)} must be refused`);
        assert.equal(s.flags, 0x5, `${String(s.step)}: reply flags`);
      }
      assert.equal(steps.find((s) => s.step === "reply only with NEED_REPLY")?.request, 10, "a MAP without NEED_REPLY got no reply");
      assert.ok(outcomes.some((o) => o.name === "BACKEND_VRING_HOST_NOTIFIER_MSG" && !o.ok));
      assert.ok(outcomes.some((o) => o.name === "BACKEND_CONFIG_CHANGE_MSG" && o.ok));
      assert.equal(device.failed, undefined, "the device survived every hostile request");

      await device.close();
      const exit = await peer.next((o) => o.phase === "exit");
      assert.equal(await peer.exited, 0);
      assert.equal(vmasNamed("memfd:vhostkit-hostile").length, 0, "reset/close dropped the read-only mapping too");
      assert.equal(fdCount(), fds, "every received fd was closed exactly once");

      // No host virtual address left the process: the memory table carries synthetic user
      // addresses (base + GPA), ring addresses lie inside them, and no word the back-end received
      // points into the real guest RAM mapping.
      const rec = exit.rec as {
        regions: { gpa: string; size: string; uaddr: string }[];
        vringAddrs: { desc: string; used: string; avail: string }[];
        words: string[];
        configReads: number;
        requests: number[];
      };
      // Tear-down: GET_VRING_BASE (11), then RESET_OWNER (4) since this back-end lacks RESET_DEVICE.
      assert.deepEqual(rec.requests.slice(-2), [11, 4], "close ends with GET_VRING_BASE, then RESET_OWNER");
      // RAM first, then the propagated mappings (GPA = the window of shmid 1 or 3 + offset).
      const region = rec.regions[0] as { gpa: string; size: string; uaddr: string };
      assert.equal(BigInt(region.gpa), 0n);
      const windows = device.info.shmem.map((r) => [r.guestPhysAddr as bigint, r.size] as const);
      for (const r of rec.regions) {
        assert.equal(BigInt(r.uaddr), SYNTHETIC_USER_BASE + BigInt(r.gpa), "user address = synthetic base + GPA");
        if (r !== region)
          assert.ok(
            windows.some(([base, size]) => BigInt(r.gpa) >= base && BigInt(r.gpa) + BigInt(r.size) <= base + size),
            `propagated ${r.gpa} lies in a shared memory window`,
          );
      }
      assert.equal(rec.regions.length, 1 + 1 + 1 + 1 + 6, "RAM, the rw map, the read-only map, the no-reply map, 6 tiny maps");
      for (const a of rec.vringAddrs) {
        for (const v of [a.desc, a.used, a.avail]) {
          const u = BigInt(v);
          assert.ok(u >= BigInt(region.uaddr) && u < BigInt(region.uaddr) + BigInt(region.size), `ring address ${v} inside the synthetic region`);
        }
      }
      const ramVmas = vmasNamed("vhostkit-guest-ram");
      assert.ok(ramVmas.length > 0);
      for (const w of rec.words) {
        const x = BigInt(w);
        for (const v of ramVmas) assert.ok(x < v.start || x >= v.end, `word ${w} is a host address of guest RAM`);
      }
      assert.ok(rec.configReads >= 2, "CONFIG_CHANGE_MSG made the front-end re-read the config");
      await guest.close();
    }));

  test("several devices in one guest: a dying back-end fails only its own device", () =>
    withGuest({}, async (guest, start) => {
      const fds = fdCount();
      const a = start("quiet");
      const c = start("quiet");
      const devA = await guest.addDevice({ endpoint: a.endpoint, timeoutMs: 10_000 });
      const devC = await guest.addDevice({ endpoint: c.endpoint, timeoutMs: 10_000 });
      const [ra, rc] = devA.info.shmem.concat(devC.info.shmem).filter((r) => r.shmid === 1);
      assert.ok(ra !== undefined && rc !== undefined);
      assert.notEqual(ra.guestPhysAddr, rc.guestPhysAddr, "each device has its own window in guest-physical space");
      assert.equal((await a.next((o) => o.phase === "mapped")).status, 0);
      assert.equal((await c.next((o) => o.phase === "mapped")).status, 0);
      // The mapping is visible through the shared guest address space at the device's window.
      const probe = guest.space.translate(ra.guestPhysAddr, 16);
      assert.ok(probe.ok);
      const rawA = await RawDriver.attach(devA);
      const pending = rawA.submit(0, [new Uint8Array(8)], [8]);
      pending.catch(() => undefined);

      a.send("die");
      const err = await devA.failure;
      assert.equal(err.code, "DISCONNECTED");
      await assert.rejects(pending, (e: unknown) => isFrontendError(e) && e.code === "DEVICE_FAILED");
      assert.equal(devA.sharedMemory?.mappingCount, 0, "the dead device's mappings were dropped");
      assert.equal(guest.space.translate(ra.guestPhysAddr, 16).ok, false);
      await assert.rejects(devA.start({ queues: [0] }), (e: unknown) => isFrontendError(e) && e.code === "DEVICE_FAILED");

      assert.equal(devC.failed, undefined);
      assert.equal(devC.sharedMemory?.mappingCount, 1);
      assert.ok(guest.space.translate(rc.guestPhysAddr, 16).ok);
      await RawDriver.attach(devC);
      assert.equal(await a.exited, 0);

      await guest.close();
      assert.equal(await c.exited, 0);
      assert.ok(fdCount() <= fds, "guest close released everything");
    }));

  test("a propagated ADD_MEM_REG the back-end refuses is forgotten: its slot and fd freed, no REM_MEM_REG later", () =>
    withGuest({}, async (guest, start) => {
      const { a, b, devA, devB } = await mappedIntoB(guest, start, "refuses-add");
      a.send("die"); // A's mapping goes away: only what B holds may be removed from B
      assert.equal((await devA.failure).code, "DISCONNECTED");
      await devB.propagationSettled();
      assert.equal(devB.failed, undefined, "a refusal does not fail the device");
      await guest.close();
      const rec = (await b.next((o) => o.phase === "exit")).rec as { regions: { gpa: unknown; size: unknown; mmapOffset: unknown }[]; removed: unknown[] };
      assert.equal(rec.regions.length, 2, "guest RAM, then the propagated mapping (refused)");
      const shm1 = devA.info.shmem.find((r) => r.shmid === 1)!;
      const { gpa, size, mmapOffset } = rec.regions[1]!;
      assert.deepEqual(
        { gpa, size, mmapOffset },
        { gpa: `0x${shm1.guestPhysAddr.toString(16)}`, size: "0x10000", mmapOffset: "0x10000" },
        "ADD_MEM_REG at region base + shm_offset, mmap_offset = the map's fd_offset",
      );
      assert.deepEqual(rec.removed, [], "the refused region was never B's to remove");
      assert.equal(await b.exited, 0);
      assert.equal(await a.exited, 0);
    }));

  test("a back-end that refuses guest RAM fails the device: start() rejects REFUSED, later calls DEVICE_FAILED", () =>
    withGuest({}, async (guest, start) => {
      const fds = fdCount();
      const peer = start("refuses-ram");
      const device = await guest.addDevice({ endpoint: peer.endpoint, timeoutMs: 10_000 });
      await assert.rejects(device.start(), (e: unknown) => isFrontendError(e) && e.code === "REFUSED");
      assert.equal(device.failed?.code, "REFUSED", "the device is failed, with the refusal as its reason");
      await assert.rejects(device.start(), (e: unknown) => isFrontendError(e) && e.code === "DEVICE_FAILED");
      await guest.close();
      assert.equal(await peer.exited, 0);
      assert.ok(fdCount() <= fds, "every fd released");
    }));

  test("reply first, never wait on another back-end: a map is answered while the propagation's ADD_MEM_REG is still unanswered", () =>
    withGuest({}, async (guest, start) => {
      const b = start("holds-add");
      const devB = await guest.addDevice({ endpoint: b.endpoint, timeoutMs: 10_000 });
      await RawDriver.attach(devB);
      const a = start("quiet");
      await guest.addDevice({ endpoint: a.endpoint, timeoutMs: 10_000 });
      await b.next((o) => o.phase === "add-held");
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<"late">((r) => (timer = setTimeout(() => r("late"), 5000)));
      const mapped = await Promise.race([a.next((o) => o.phase === "mapped"), late]);
      clearTimeout(timer);
      assert.notEqual(mapped, "late", "A had its reply while B still held the ADD_MEM_REG");
      assert.equal((mapped as Record<string, unknown>).status, 0);
      b.send("release");
      await devB.propagationSettled();
      assert.equal(devB.failed, undefined);
      a.send("die");
      await guest.close();
      assert.equal(await b.exited, 0);
      assert.equal(await a.exited, 0);
    }));

  test("SHMEM_MAP from a back-end that declared no shared memory region is refused; the device goes on", () =>
    withGuest({}, async (guest, start) => {
      const peer = start("no-regions");
      const outcomes: BackendRequestOutcome[] = [];
      const device = await guest.addDevice({ endpoint: peer.endpoint, timeoutMs: 10_000, onBackendRequest: (o) => outcomes.push(o) });
      assert.deepEqual(device.info.shmem, [], "no regions");
      assert.notEqual((await peer.next((o) => o.phase === "mapped")).status, 0, "refused");
      assert.ok(
        outcomes.some((o) => o.name === "BACKEND_SHMEM_MAP" && !o.ok && (o.reason ?? "").length > 0),
        outcomes.map((o) => `${o.name} ${o.ok} ${o.reason ?? ""}`).join("; "),
      );
      assert.equal(device.failed, undefined);
      peer.send("die");
      await guest.close();
      assert.equal(await peer.exited, 0);
    }));

  test("a back-end that refuses to REM_MEM_REG a mapping that went away is failed: its table would keep a stale range", () =>
    withGuest({}, async (guest, start) => {
      const { a, b, devA, devB } = await mappedIntoB(guest, start, "refuses-rem");
      assert.equal(devB.failed, undefined, "the ADD was taken");
      a.send("die");
      assert.equal((await devA.failure).code, "DISCONNECTED");
      const failure = await devB.failure;
      assert.equal(failure.code, "REFUSED");
      assert.match(failure.message, /refused to remove/);
      const rec = (await b.next((o) => o.phase === "exit")).rec as { removed: unknown[] };
      assert.equal(rec.removed.length, 1, "the REM_MEM_REG was sent once");
      await guest.close();
      assert.equal(await b.exited, 0);
      assert.equal(await a.exited, 0);
    }));

  test("malformed and out-of-range MEM_READ / MEM_WRITE: each refused with the failure reply, the front-end keeps serving", () => {
    const ramSize = 16n << 20n;
    return withGuest({ ramSize }, async (guest, start) => {
      const fds = fdCount();
      const peer = start("mem-rw", String(ramSize));
      const outcomes: BackendRequestOutcome[] = [];
      const device = await guest.addDevice({ endpoint: peer.endpoint, timeoutMs: 10_000, memRw: true, onBackendRequest: (o) => outcomes.push(o) });
      assert.equal(device.memRwNegotiated, true);
      await peer.next((o) => o.phase === "done");
      const steps = peer.lines.filter((o) => typeof o.step === "string");
      assert.equal(steps.length, 15);
      for (const s of steps) {
        assert.equal(s.ok, s.expect === "ok", `${String(s.step)}: ${JSON.stringify(s)}`);
        assert.equal(s.flags, 0x5, `${String(s.step)}: reply flags`);
        assert.equal(s.echo, true, `${String(s.step)}: a MEM_READ reply echoes guest_address (size 0, padding 0 on failure)`);
      }
      assert.equal(outcomes.filter((o) => !o.ok).length, 12, "each refusal reported with its reason");
      assert.ok(outcomes.every((o) => o.ok || (o.reason ?? "").length > 0));
      assert.equal(device.failed, undefined, "the device survived every malformed request");
      await guest.close();
      assert.equal(await peer.exited, 0);
      assert.ok(fdCount() <= fds, "every received fd was closed");
    });
  });

  test("a back-end that never completes: every request, those waiting for descriptors too, times out and fails the device", () =>
    withGuest({}, async (guest, start) => {
      const peer = start("quiet");
      const dev = await guest.addDevice({ endpoint: peer.endpoint, timeoutMs: 10_000 });
      const raw = await RawDriver.attach(dev, { queues: [0], queueSize: 4 });
      const q = raw.queue(0);
      const t0 = performance.now();
      // 2 descriptors each: 2 fit the ring, 4 wait for free descriptors.
      const pending = Array.from({ length: 6 }, () => q.transfer([new Uint8Array(8)], [8], 300));
      await new Promise((r) => setImmediate(r)); // transfer copies into guest RAM, then submits
      assert.equal(q.inFlight, 6);
      const results = await Promise.allSettled(pending);
      const elapsed = performance.now() - t0;
      for (const r of results) {
        assert.equal(r.status, "rejected");
        const e = (r as PromiseRejectedResult).reason as unknown;
        assert.ok(isFrontendError(e) && e.code === "DEVICE_FAILED" && isFrontendError(e.cause) && e.cause.code === "TIMEOUT", String(e));
      }
      assert.ok(elapsed >= 290 && elapsed < 5000, `timed out after ${elapsed.toFixed(0)} ms`);
      assert.equal((await dev.failure).code, "TIMEOUT");
      assert.equal(q.inFlight, 0);
      await guest.close();
      assert.equal(await peer.exited, 0);
    }));

  test('check: a back-end whose ring keeps running after GET_VRING_BASE fails "GET_VRING_BASE stops the ring"', async () => {
    const peer = startPeer("ignores-stop");
    try {
      const results = await runConformance({ endpoint: peer.endpoint, timeoutMs: 10_000 });
      const stop = results.find((r) => r.name === "GET_VRING_BASE stops the ring");
      assert.equal(stop?.status, "fail", JSON.stringify(results));
      assert.match(stop?.reason ?? "", /kicked after it was used/);
      assert.ok(await peer.next((o) => o["phase"] === "used-after-stop"), "the hostile back-end did use the chain");
      assert.equal(await peer.exited, 0);
    } finally {
      await peer.stop();
    }
  });
});
