import assert from "node:assert/strict";
import { test } from "node:test";
import { callHook } from "../src/index.js";

test("callHook passes the arguments on and discards what the hook throws or rejects with", async () => {
  const seen: unknown[] = [];
  callHook((a: number, b: string) => void seen.push(a, b), 1, "x");
  assert.deepEqual(seen, [1, "x"]);
  callHook(undefined, 2);
  assert.doesNotThrow(() =>
    callHook(() => {
      throw new Error("a throwing hook");
    }),
  );
  let rejected = false;
  const onUnhandled = (): void => {
    rejected = true;
  };
  process.on("unhandledRejection", onUnhandled);
  try {
    callHook(async () => {
      throw new Error("a rejecting hook");
    });
    // Two macrotask turns: an unhandled rejection would have been reported by then.
    await new Promise<void>((resolve) => setImmediate(() => setImmediate(resolve)));
    assert.equal(rejected, false, "the rejection was handled");
  } finally {
    process.off("unhandledRejection", onUnhandled);
  }
});
