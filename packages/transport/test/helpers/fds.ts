/** Test helpers: fd plumbing below the Endpoint (pipes, raw writes, hand-built frames, /proc/self/fd). */
import assert from "node:assert/strict";
import { readdirSync, readlinkSync } from "node:fs";
import { OwnedFd } from "../../src/index.js";
import { socketSys } from "../../src/sys/socket.js";

/** Number of open fds of this process. Create `Reactor.shared()` first: its two fds live for good. */
export function fdCount(): number {
  return readdirSync("/proc/self/fd").length;
}

/**
 * Number of open fds of this process that refer to `target` (e.g. "/dev/null"): unlike
 * {@link fdCount}, blind to the fds of a child process's stdio that close whenever it exits.
 */
export function fdsTo(target: string): number {
  let n = 0;
  for (const fd of readdirSync("/proc/self/fd")) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`) === target) n++;
    } catch {
      // closed since the listing (the listing's own directory fd, for one)
    }
  }
  return n;
}

/** A close-on-exec pipe: [read end, write end]. */
export function pipe(): [OwnedFd, OwnedFd] {
  const p = new Int32Array(2);
  assert.equal(socketSys().pipe2(p, 0o2000000), 0);
  return [new OwnedFd(p[0] ?? -1), new OwnedFd(p[1] ?? -1)];
}

/** write(2) all of `bytes` to `fd` in one call, as a raw peer would. */
export function rawWrite(fd: number, bytes: Uint8Array): void {
  assert.equal(Number(socketSys().write(fd, bytes, bytes.length)), bytes.length);
}

/** A frame built by hand: header (request, flags, size; little-endian) then `payload`; `size` may lie. */
export function frame(request: number, flags: number, payload: Uint8Array, size = payload.length): Uint8Array {
  const b = new Uint8Array(12 + payload.length);
  const v = new DataView(b.buffer);
  v.setUint32(0, request, true);
  v.setUint32(4, flags, true);
  v.setUint32(8, size, true);
  b.set(payload, 12);
  return b;
}
