/**
 * `Endpoint.hangup` / `Watch.hangup`: the peer closing its end is reported without reading, while
 * a receive is pending or not, and to waiters that ask after the fact.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Endpoint, EventFd, socketPair } from "../src/index.js";

test("the peer's close resolves hangup() without consuming anything; later callers resolve at once", async () => {
  const [a, b] = socketPair();
  const mine = new Endpoint(a);
  const theirs = new Endpoint(b);
  try {
    const hung = mine.hangup();
    await theirs.send(1, 1, new Uint8Array([1, 2, 3, 4]));
    theirs.close();
    // Something must wait for the reactor to poll: an eventfd nobody signals, here.
    const idle = EventFd.create();
    void idle.wait().catch(() => undefined);
    await hung;
    await mine.hangup();
    const msg = await mine.recv();
    assert.deepEqual([...msg.payload], [1, 2, 3, 4], "the message sent before the close is still there");
    await assert.rejects(mine.recv());
    idle.close();
  } finally {
    mine.close();
  }
});
