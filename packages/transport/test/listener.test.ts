import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawn } from "node:child_process";
import { connect, listen, TransportError } from "../src/index.js";
import { closeAfter } from "./helpers/lifetime.js";

let dir = "";
before(() => {
  dir = mkdtempSync(join(tmpdir(), "vhostkit-transport-"));
});
after(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe("listen / connect", () => {
  test("accepts peers in turn and sets the socket mode", async (t) => {
    const path = join(dir, "a.sock");
    const [l] = closeAfter(t, listen(path, { mode: 0o600 }));
    assert.equal(statSync(path).mode & 0o777, 0o600);
    for (let i = 0; i < 3; i++) {
      const accepted = l.accept();
      const [c] = closeAfter(t, await connect(path));
      const [s] = closeAfter(t, await accepted);
      await c.send(10 + i, 1, new Uint8Array([i]));
      const m = await s.recv();
      assert.equal(m.request, 10 + i);
      c.close();
      s.close();
    }
  });

  test("a stale socket file is replaced; a live one or a plain file is refused", async (t) => {
    const path = join(dir, "b.sock");
    const [live] = closeAfter(t, listen(path));
    assert.throws(
      () => listen(path),
      (e: unknown) => e instanceof TransportError && e.code === "ADDR_IN_USE",
    );
    live.close();
    const file = join(dir, "plain");
    writeFileSync(file, "x");
    assert.throws(
      () => listen(file),
      (e: unknown) => e instanceof TransportError && e.code === "ADDR_IN_USE",
    );
    const [l2] = closeAfter(t, listen(path));
    const accepting = l2.accept();
    l2.close();
    await assert.rejects(accepting, (e: unknown) => e instanceof TransportError && e.code === "CLOSED");
    // A really stale socket: a process that listened on it was killed, the file stays behind.
    const stale = join(dir, "stale.sock");
    const child = spawn(process.execPath, ["-e", `require("node:net").createServer().listen(${JSON.stringify(stale)}, () => console.log("up"))`], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    const dead = new Promise((r) => child.once("close", r));
    t.after(() => void child.kill("SIGKILL"));
    await new Promise<void>((resolve, reject) => {
      child.stdout!.once("data", () => resolve());
      child.once("exit", (code) => reject(new Error(`the listener exited before it listened (code ${code})`)));
    });
    child.kill("SIGKILL");
    await dead;
    assert.ok(statSync(stale).isSocket(), "the killed listener left its socket file");
    await assert.rejects(connect(stale), (e: unknown) => e instanceof TransportError && e.errno === 111, "nobody listens: ECONNREFUSED");
    const [fresh] = closeAfter(t, listen(stale));
    const accepted = fresh.accept();
    closeAfter(t, await connect(stale), await accepted);
  });

  test("connect to a listener whose backlog is full waits without blocking the thread", async (t) => {
    const path = join(dir, "busy.sock");
    const [l] = closeAfter(t, listen(path, { backlog: 1 }));
    const queued = [];
    for (;;) {
      try {
        queued.push(...closeAfter(t, await connect(path, { busyTimeoutMs: 0 })));
      } catch (e) {
        assert.ok(e instanceof TransportError && e.errno === 11, `a full backlog is EAGAIN, got ${String(e)}`);
        break;
      }
      assert.ok(queued.length < 64, "the backlog never filled");
    }
    let settled = false;
    const waiting = connect(path).then((ep) => ((settled = true), closeAfter(t, ep)[0]));
    let ticks = 0;
    await new Promise<void>((resolve) => {
      const timer = setInterval(() => ++ticks === 5 && (clearInterval(timer), resolve()), 2);
    });
    assert.equal(settled, false, "still waiting for room in the backlog");
    assert.equal(ticks, 5, "timers ran meanwhile: the JS thread was not blocked in connect(2)");
    closeAfter(t, await l.accept());
    await waiting;
  });

  test("connect with retries reaches a back-end that starts listening late", async (t) => {
    const path = join(dir, "late.sock");
    // connect() makes its first attempt before it returns: nothing listens yet, so that attempt has
    // already failed with ENOENT and the next one waits for its retry delay.
    const connecting = connect(path, { retry: { attempts: 50, delayMs: 10 } });
    const [l] = closeAfter(t, listen(path));
    const [client, server] = closeAfter(t, ...(await Promise.all([connecting, l.accept()])));
    await client.send(1, 1, new Uint8Array(0));
    assert.equal((await server.recv()).request, 1);
  });

  test("connect reports ENOENT after its retries", async () => {
    await assert.rejects(
      connect(join(dir, "missing.sock"), { retry: { attempts: 2, delayMs: 1 } }),
      (e: unknown) => e instanceof TransportError && e.errno === 2,
    );
  });
});
