import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawn } from "node:child_process";
import { connect, listen, TransportError } from "../src/index.js";

let dir = "";
before(() => {
  dir = mkdtempSync(join(tmpdir(), "vhostkit-transport-"));
});
after(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe("listen / connect", () => {
  test("accepts peers in turn and sets the socket mode", async () => {
    const path = join(dir, "a.sock");
    const l = listen(path, { mode: 0o600 });
    assert.equal(statSync(path).mode & 0o777, 0o600);
    for (let i = 0; i < 3; i++) {
      const accepted = l.accept();
      const c = await connect(path);
      const s = await accepted;
      await c.send(10 + i, 1, new Uint8Array([i]));
      const m = await s.recv();
      assert.equal(m.request, 10 + i);
      c.close();
      s.close();
    }
    l.close();
  });

  test("a stale socket file is replaced; a live one or a plain file is refused", async () => {
    const path = join(dir, "b.sock");
    const live = listen(path);
    assert.throws(() => listen(path), (e: unknown) => e instanceof TransportError && e.code === "ADDR_IN_USE");
    live.close();
    const file = join(dir, "plain");
    writeFileSync(file, "x");
    assert.throws(() => listen(file), (e: unknown) => e instanceof TransportError && e.code === "ADDR_IN_USE");
    const l2 = listen(path);
    const accepting = l2.accept();
    l2.close();
    await assert.rejects(accepting, (e: unknown) => e instanceof TransportError && e.code === "CLOSED");
    // A really stale socket: a process that listened on it was killed, the file stays behind.
    const stale = join(dir, "stale.sock");
    const child = spawn(process.execPath, ["-e", `require("node:net").createServer().listen(${JSON.stringify(stale)}, () => console.log("up"))`], { stdio: ["ignore", "pipe", "inherit"] });
    await new Promise<void>((resolve) => child.stdout!.once("data", () => resolve()));
    const dead = new Promise((r) => child.once("close", r));
    child.kill("SIGKILL");
    await dead;
    assert.ok(statSync(stale).isSocket(), "the killed listener left its socket file");
    await assert.rejects(connect(stale), (e: unknown) => e instanceof TransportError && e.errno === 111, "nobody listens: ECONNREFUSED");
    const fresh = listen(stale);
    const accepted = fresh.accept();
    const c = await connect(stale);
    (await accepted).close();
    c.close();
    fresh.close();
  });

  test("connect to a listener whose backlog is full waits without blocking the thread", async () => {
    const path = join(dir, "busy.sock");
    const l = listen(path, { backlog: 1 });
    const queued = [];
    for (;;) {
      try {
        queued.push(await connect(path, { busyTimeoutMs: 0 }));
      } catch (e) {
        assert.ok(e instanceof TransportError && e.errno === 11, `a full backlog is EAGAIN, got ${String(e)}`);
        break;
      }
      assert.ok(queued.length < 64, "the backlog never filled");
    }
    let settled = false;
    const waiting = connect(path).then((ep) => ((settled = true), ep));
    let ticks = 0;
    await new Promise<void>((resolve) => {
      const t = setInterval(() => ++ticks === 5 && (clearInterval(t), resolve()), 2);
    });
    assert.equal(settled, false, "still waiting for room in the backlog");
    assert.equal(ticks, 5, "timers ran meanwhile: the JS thread was not blocked in connect(2)");
    (await l.accept()).close();
    const ep = await waiting;
    ep.close();
    for (const q of queued) q.close();
    l.close();
  });

  test("connect with retries reaches a back-end that starts listening late", async () => {
    const path = join(dir, "late.sock");
    const connecting = connect(path, { retry: { attempts: 50, delayMs: 10 } });
    await new Promise((r) => setTimeout(r, 60)); // a few attempts fail with ENOENT first
    const l = listen(path);
    const [client, server] = await Promise.all([connecting, l.accept()]);
    await client.send(1, 1, new Uint8Array(0));
    assert.equal((await server.recv()).request, 1);
    client.close();
    server.close();
    l.close();
  });

  test("connect reports ENOENT after its retries", async () => {
    await assert.rejects(connect(join(dir, "missing.sock"), { retry: { attempts: 2, delayMs: 1 } }), (e: unknown) => e instanceof TransportError && e.errno === 2);
  });
});
