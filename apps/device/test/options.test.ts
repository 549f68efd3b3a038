/**
 * The CLI's option mapping, without a peer.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { deviceOptions } from "../src/options.js";

test("--trust-shmem-fds turns the front-end's seal check off; by default it stays on", () => {
  const base = { socket: "x", dialect: "upstream" as const, timeout: "100" };
  assert.equal(deviceOptions(base).requireSealedFds, undefined, "default: the library's (sealed fds required)");
  assert.equal(deviceOptions({ ...base, trustShmemFds: true }).requireSealedFds, false);
});
