/**
 * The FUSE codecs and the request/reply layer of the virtio-fs driver against hostile replies
 * (docs/virtio-fs.md#fuse-messages): every length is checked before it is read, and errors name
 * the request and the errno.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { isFrontendError, type DriverQueue, type TransferResult } from "../src/index.js";
import { decodeDirentplus, decodeEntryOut, decodeInitOut, encodeName, ENTRY_OUT_SIZE, FuseOpcode } from "../src/drivers/fuse-protocol.js";
import { FuseSession, fuseError } from "../src/drivers/fuse-session.js";

function direntplus(name: string, nodeid: bigint, namelenOverride?: number): Uint8Array {
  const n = new TextEncoder().encode(name);
  const size = ENTRY_OUT_SIZE + 24 + ((n.byteLength + 7) & ~7);
  const b = new Uint8Array(size);
  const v = new DataView(b.buffer);
  v.setBigUint64(0, nodeid, true);
  v.setBigUint64(ENTRY_OUT_SIZE, 42n, true); // ino
  v.setBigUint64(ENTRY_OUT_SIZE + 8, 7n, true); // off
  v.setUint32(ENTRY_OUT_SIZE + 16, namelenOverride ?? n.byteLength, true);
  v.setUint32(ENTRY_OUT_SIZE + 20, 8, true);
  b.set(n, ENTRY_OUT_SIZE + 24);
  return b;
}

test("READDIRPLUS records decode with UTF-8 names; a name that does not fit, is empty or holds '/' is a protocol error", () => {
  const two = new Uint8Array([...direntplus("naïve café ☕.txt", 5n), ...direntplus("b", 6n)]);
  const d = decodeDirentplus(two);
  assert.deepEqual(
    d.map((e) => [e.name, e.entry.nodeid, e.off, e.type]),
    [
      ["naïve café ☕.txt", 5n, 7n, 8],
      ["b", 6n, 7n, 8],
    ],
  );
  for (const bad of [direntplus("abc", 1n, 4096), direntplus("abc", 1n, 0), direntplus("a/b", 1n), direntplus("abc", 1n).subarray(0, ENTRY_OUT_SIZE + 10)]) {
    assert.throws(
      () => decodeDirentplus(bad),
      (e: unknown) => isFrontendError(e) && e.code === "PROTOCOL",
    );
  }
});

test("fuse_entry_out and fuse_init_out: short replies and a foreign major version are refused", () => {
  assert.throws(() => decodeEntryOut(new Uint8Array(127), "lookup"), /fuse lookup: reply of 127 bytes is shorter than 128/);
  const init = new Uint8Array(64);
  const v = new DataView(init.buffer);
  v.setUint32(0, 7, true);
  v.setUint32(4, 31, true);
  v.setUint32(12, 1 << 22, true);
  v.setUint32(20, 1 << 20, true);
  v.setUint16(32, 256, true);
  assert.deepEqual(decodeInitOut(init), { major: 7, minor: 31, flags: 1 << 22, maxWrite: 1 << 20, maxPages: 256 });
  assert.deepEqual(decodeInitOut(init.subarray(0, 24)).maxPages, undefined, "the 7.22 layout has no max_pages");
  assert.throws(
    () => decodeInitOut(init.subarray(0, 23)),
    (e: unknown) => isFrontendError(e) && e.code === "PROTOCOL",
  );
  v.setUint32(0, 8, true);
  assert.throws(
    () => decodeInitOut(init),
    (e: unknown) => isFrontendError(e) && e.code === "NEGOTIATION",
  );
});

test("names: UTF-8 plus NUL; empty, over 255 bytes, '/' or NUL are bad arguments", () => {
  assert.deepEqual([...encodeName("é")], [0xc3, 0xa9, 0]);
  for (const bad of ["", "a/b", "a\0b", "x".repeat(256)])
    assert.throws(
      () => encodeName(bad),
      (e: unknown) => isFrontendError(e) && e.code === "BAD_ARGUMENT",
    );
});

test("FUSE errors read as errno names: IO_ERROR with detail.actual, UNSUPPORTED for ENOSYS", () => {
  const e = fuseError("LOOKUP", "dir/x y", 2);
  assert.equal(e.message, 'fs lookup "dir/x y": no such file or directory (ENOENT)');
  assert.deepEqual([e.code, e.detail.actual, e.detail.request], ["IO_ERROR", "ENOENT", "FUSE_LOOKUP"]);
  assert.equal(fuseError("READDIRPLUS", "", 38).code, "UNSUPPORTED");
  assert.equal(fuseError("READ", "f", 9999).message, 'fs read "f": errno 9999');
});

/** A request queue that answers each chain with `reply(inHeader)` (the out header and body as the device wrote them). */
function fakeQueue(reply: (unique: bigint) => { readonly len: number; readonly header: Uint8Array; readonly body?: Uint8Array }): DriverQueue {
  return {
    transfer: async (readable: readonly Uint8Array[]): Promise<TransferResult> => {
      const h = readable[0] as Uint8Array;
      const r = reply(new DataView(h.buffer, h.byteOffset).getBigUint64(8, true));
      return { len: r.len, buffers: [r.header, r.body ?? new Uint8Array(0)] };
    },
  } as unknown as DriverQueue;
}

function outHeader(len: number, error: number, unique: bigint): Uint8Array {
  const b = new Uint8Array(16);
  const v = new DataView(b.buffer);
  v.setUint32(0, len, true);
  v.setInt32(4, error, true);
  v.setBigUint64(8, unique, true);
  return b;
}

test("a reply with the wrong unique, a length that disagrees, a used length beyond the buffers or a positive error is refused", async () => {
  const req = { opcode: FuseOpcode.GETATTR, nodeid: 1n, args: [new Uint8Array(16)], replyMax: 104, subject: "/" };
  const cases: [string, (u: bigint) => { len: number; header: Uint8Array }][] = [
    ["unique", (u) => ({ len: 16, header: outHeader(16, 0, u + 1n) })],
    ["header says", (u) => ({ len: 120, header: outHeader(16, 0, u) })],
    ["used length", (u) => ({ len: 4096, header: outHeader(4096, 0, u) })],
    ["used length", (u) => ({ len: 8, header: outHeader(8, 0, u) })],
    ["error field", (u) => ({ len: 16, header: outHeader(16, 5, u) })],
    ["error field", (u) => ({ len: 16, header: outHeader(16, -5000, u) })],
  ];
  for (const [what, reply] of cases) {
    const s = new FuseSession(fakeQueue(reply), fakeQueue(reply));
    await assert.rejects(s.call(req), (e: unknown) => isFrontendError(e) && e.code === "PROTOCOL" && e.message.includes(what), what);
  }
  const s = new FuseSession(
    fakeQueue((u) => ({ len: 16, header: outHeader(16, -13, u) })),
    fakeQueue((u) => ({ len: 16, header: outHeader(16, -13, u) })),
  );
  await assert.rejects(s.call(req), /fs getattr "\/": permission denied \(EACCES\)/);
  const ok = new FuseSession(
    fakeQueue(() => ({ len: 0, header: new Uint8Array(16) })),
    fakeQueue((u) => ({ len: 20, header: outHeader(20, 0, u), body: new Uint8Array([1, 2, 3, 4, 5, 6]) })),
  );
  assert.deepEqual([...(await ok.call(req))], [1, 2, 3, 4], "the body is cut to the used length");
  ok.counted(5n);
  ok.counted(5n);
  ok.counted(1n);
  assert.equal(ok.lookedUp, 1, "the root is never counted");
  await ok.forgetAll();
  assert.equal(ok.lookedUp, 0);
});
