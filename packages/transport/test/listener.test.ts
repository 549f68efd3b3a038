import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
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
    // Make a stale socket: bind through a listener, then close its fd without unlinking is not
    // reachable through the API, so simulate with a second listener whose file we keep.
    const l2 = listen(path);
    const accepting = l2.accept();
    l2.close();
    await assert.rejects(accepting, (e: unknown) => e instanceof TransportError && e.code === "CLOSED");
  });

  test("connect reports ENOENT after its retries", async () => {
    await assert.rejects(connect(join(dir, "missing.sock"), { retry: { attempts: 2, delayMs: 1 } }), (e: unknown) => e instanceof TransportError && e.errno === 2);
  });
});
