/**
 * Revision 2 of vhostkit's MEM_READ / MEM_WRITE on the back-end (docs/shmem.md#shared-data-buffer-revision-2):
 * `BackendClient` takes the front-end's buffer from the reply to its first in-buffer MEM_READ and
 * moves data through it; a buffer it cannot trust (unsealed, wrong size, missing) makes it read
 * inline instead. The test plays the front-end on a real socketpair with its own memfd.
 */
import assert from "node:assert/strict";
import { before, test } from "node:test";
import { Endpoint, Reactor, type ReceivedMessage, sendReply, socketPair } from "@vhostkit/transport";
import { MAP, MFD, PROT, closeFd, ftruncate, memfdCreate, mmap, munmap, nativeView, sealedMemfd } from "@vhostkit/transport/sys";
import { MEM_RW_FLAG_IN_BUFFER, MEM_RW_MAX_DATA, MEM_RW_MAX_PAYLOAD, decodeMemAccessHeadFlags, encodeMemAccessHead } from "@vhostkit/wire";
import { BackendClient, isBackendError } from "../src/index.js";

before(() => {
  Reactor.shared();
});

/** A client with revision 2 negotiated, and the test's front-end end of the channel. */
function pair() {
  const [mine, theirs] = socketPair();
  const client = new BackendClient(new Endpoint(mine, { maxPayload: MEM_RW_MAX_PAYLOAD }), {
    replyAck: true,
    shmem: false,
    sendFd: false,
    config: false,
    memRw: true,
    memRwBuffer: true,
    isRunning: () => true,
  });
  const fe = new Endpoint(theirs, { maxPayload: MEM_RW_MAX_PAYLOAD });
  return {
    client,
    fe,
    [Symbol.dispose]() {
      client.close();
      fe.close();
    },
  };
}

/** A memfd of `size` bytes, mapped here; `seal`: sealed against shrinking and growing. */
function frontBuffer(size: number, seal: boolean): { fd: number; bytes: Uint8Array; dispose(): void } {
  let fd: number;
  if (seal) fd = sealedMemfd("mem-rw-test-buffer", BigInt(size));
  else {
    fd = memfdCreate("mem-rw-test-unsealed", MFD.CLOEXEC);
    ftruncate(fd, BigInt(size));
  }
  const m = mmap(0n, size, PROT.READ | PROT.WRITE, MAP.SHARED, fd, 0n);
  return { fd, bytes: new Uint8Array(nativeView(m.ptr, size)), dispose: () => (munmap(m.addr, size), closeFd(fd)) };
}

function head(m: ReceivedMessage): { guestAddress: bigint; size: number; flags: number } {
  return decodeMemAccessHeadFlags("BACKEND_MEM_READ", m.payload.subarray(0, 16));
}

test("the client takes the buffer from the first reply, then reads and writes through it (16-byte messages)", async () => {
  using p = pair();
  const buf = frontBuffer(MEM_RW_MAX_DATA, true);
  try {
    const dst = new Uint8Array(5000);
    const reading = p.client.memReadInto(0x1000n, dst);
    const req = await p.fe.recv();
    assert.equal(req.request, 11);
    assert.equal(req.payload.byteLength, 16);
    assert.deepEqual(head(req), { guestAddress: 0x1000n, size: 5000, flags: MEM_RW_FLAG_IN_BUFFER });
    buf.bytes.fill(0x5a, 0, 5000);
    await sendReply(p.fe, 11, encodeMemAccessHead("BACKEND_MEM_READ", 0x1000n, 5000, undefined, MEM_RW_FLAG_IN_BUFFER), [buf.fd]);
    await reading;
    assert.ok(dst.every((b) => b === 0x5a));
    // A write: only the head travels, the data is in the buffer when the request arrives.
    const writing = p.client.memWrite(0x2000n, Uint8Array.of(1, 2, 3));
    const w = await p.fe.recv();
    assert.equal(w.request, 12);
    assert.deepEqual(head(w), { guestAddress: 0x2000n, size: 3, flags: MEM_RW_FLAG_IN_BUFFER });
    assert.deepEqual([...buf.bytes.subarray(0, 3)], [1, 2, 3]);
    await sendReply(p.fe, 12, new Uint8Array(8));
    await writing;
    // A refused write is REJECTED; a refused read too (size 0 echoed).
    const refused = p.client.memWrite(0x2000n, Uint8Array.of(4));
    await p.fe.recv();
    const st = new Uint8Array(8);
    st[0] = 14;
    await sendReply(p.fe, 12, st);
    await assert.rejects(refused, (e: unknown) => isBackendError(e) && e.code === "REJECTED");
    const second = p.client.memReadInto(0x3000n, new Uint8Array(4));
    assert.equal(head(await p.fe.recv()).flags, MEM_RW_FLAG_IN_BUFFER);
    await sendReply(p.fe, 11, encodeMemAccessHead("BACKEND_MEM_READ", 0x3000n, 0, undefined, MEM_RW_FLAG_IN_BUFFER));
    await assert.rejects(second, (e: unknown) => isBackendError(e) && e.code === "REJECTED");
    // A reply that does not echo the in-buffer flag is malformed.
    const bad = p.client.memReadInto(0x3000n, new Uint8Array(4));
    await p.fe.recv();
    await sendReply(p.fe, 11, encodeMemAccessHead("BACKEND_MEM_READ", 0x3000n, 4));
    await assert.rejects(bad, (e: unknown) => isBackendError(e) && e.code === "PROTOCOL");
  } finally {
    buf.dispose();
  }
});

for (const [what, size, seal, withFd] of [
  ["an unsealed memfd", MEM_RW_MAX_DATA, false, true],
  ["a buffer of the wrong size", 4096, true, true],
  ["no fd at all", MEM_RW_MAX_DATA, true, false],
] as const) {
  test(`a first reply with ${what}: the client reads that request inline and stays inline`, async () => {
    using p = pair();
    const buf = frontBuffer(size, seal);
    try {
      const dst = new Uint8Array(8);
      const reading = p.client.memReadInto(0x1000n, dst);
      assert.equal(head(await p.fe.recv()).flags, MEM_RW_FLAG_IN_BUFFER);
      await sendReply(p.fe, 11, encodeMemAccessHead("BACKEND_MEM_READ", 0x1000n, 8, undefined, MEM_RW_FLAG_IN_BUFFER), withFd ? [buf.fd] : []);
      // The same read again, revision 1: the data in the reply.
      const again = await p.fe.recv();
      assert.deepEqual(head(again), { guestAddress: 0x1000n, size: 8, flags: 0 });
      const reply = new Uint8Array(24);
      reply.set(encodeMemAccessHead("BACKEND_MEM_READ", 0x1000n, 8));
      reply.fill(0x77, 16);
      await sendReply(p.fe, 11, reply);
      await reading;
      assert.ok(dst.every((b) => b === 0x77));
      // Writes stay inline: 16 + n bytes.
      const writing = p.client.memWrite(0x2000n, Uint8Array.of(9, 9));
      const w = await p.fe.recv();
      assert.equal(w.payload.byteLength, 18);
      assert.equal(head(w).flags, 0);
      await sendReply(p.fe, 12, new Uint8Array(8));
      await writing;
    } finally {
      buf.dispose();
    }
  });
}
