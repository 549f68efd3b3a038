/**
 * errno values as text: the names and descriptions system-call errors carry in their messages, so
 * that a person reads `connect /x.sock: no such file or directory (ENOENT)`, not `errno 2`.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { connect, describeErrno, errnoName, Errno, isTransportError } from "../src/index.js";
import { describeErrno as fromSys } from "../src/sys/index.js";

test("names and descriptions: the Errno table's numbers all have both; unknown values say their number", () => {
  assert.equal(describeErrno(2), "no such file or directory (ENOENT)");
  assert.equal(describeErrno(111), "connection refused (ECONNREFUSED)");
  assert.equal(errnoName(13), "EACCES");
  assert.equal(describeErrno(4242), "errno 4242");
  assert.equal(errnoName(-1), "errno -1");
  for (const [name, n] of Object.entries(Errno)) assert.equal(errnoName(n), name, `${name} = ${n}`);
  assert.equal(fromSys, describeErrno, "regions reach the same function through /sys");
});

test("a failed connect says the path and the errno by name", async () => {
  const path = `/tmp/vhostkit-no-such-dir-${process.pid}/x.sock`;
  await assert.rejects(
    connect(path),
    (e: unknown) => isTransportError(e) && e.errno === 2 && e.message === `connect ${path}: no such file or directory (ENOENT)`,
  );
});
