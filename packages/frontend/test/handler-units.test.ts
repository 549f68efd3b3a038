import { before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Endpoint, Reactor, socketPair } from "@vhostkit/transport";
import { closeFd, sealedMemfd } from "@vhostkit/transport/sys";
import { DeviceSharedMemory, guestAddress } from "@vhostkit/regions";
import { CROSVM_LEGACY, UPSTREAM, type Dialect } from "@vhostkit/wire";
import { BackendRequestHandler, GuestAllocator, decodeBlkConfig, isFrontendError, sharedMemoryPort, type BackendRequestOutcome } from "../src/index.js";

before(() => {
  Reactor.shared();
});

/** The u64 status of an ack payload (payloads may be views into a larger buffer). */
function status(p: Uint8Array): bigint {
  return new DataView(p.buffer, p.byteOffset, p.byteLength).getBigUint64(0, true);
}

function mmap40(shmid: number, shmOffset: bigint, len: bigint, flags = 1n): Uint8Array {
  const b = new Uint8Array(40);
  const v = new DataView(b.buffer);
  v.setUint8(0, shmid);
  v.setBigUint64(16, shmOffset, true);
  v.setBigUint64(24, len, true);
  v.setBigUint64(32, flags, true);
  return b;
}

function crosvmMap(shmid: number, shmOffset: bigint, len: bigint): Uint8Array {
  const b = new Uint8Array(32);
  const v = new DataView(b.buffer);
  v.setUint8(0, 0x3); // MAP_R | MAP_W
  v.setUint8(1, shmid);
  v.setBigUint64(8, shmOffset, true);
  v.setBigUint64(24, len, true);
  return b;
}

/**
 * A handler on one end of a socketpair; the test plays the back-end on the other end. `await using`
 * closes the back-end's end, waits for the handler to finish, and frees the regions and the memfd.
 */
function harness(dialect: Dialect, replyAck: boolean) {
  const [mine, theirs] = socketPair();
  const shmem = new DeviceSharedMemory({ sizes: new Map([[1, 0x10_0000n]]), guestPhysAddr: guestAddress(1n << 32n) });
  const outcomes: BackendRequestOutcome[] = [];
  const handler = new BackendRequestHandler(new Endpoint(mine), {
    dialect,
    replyAck,
    backendSendFd: true,
    sharedMemory: sharedMemoryPort({ regions: shmem }),
    onOutcome: (o) => outcomes.push(o),
  });
  const done = handler.start();
  const peer = new Endpoint(theirs);
  const fd = sealedMemfd("handler-unit", 0x10_0000n);
  let closed = false;
  return {
    peer,
    shmem,
    outcomes,
    fd,
    async [Symbol.asyncDispose]() {
      if (closed) return;
      closed = true;
      peer.close();
      await done;
      shmem.dispose();
      closeFd(fd);
    },
  };
}

describe("back-end request handler reply rules", () => {
  test("upstream without REPLY_ACK: NEED_REPLY is not answered; an always-replied request is", async () => {
    await using h = harness(UPSTREAM, false);
    await h.peer.send(9, 0x9, mmap40(1, 0n, 0x1000n), [h.fd]);
    await h.peer.send(8, 0x1, new Uint8Array(16)); // SHARED_OBJECT_LOOKUP: always replied (refused)
    const r = await h.peer.recv();
    assert.equal(r.request, 8, "the MAP got no reply");
    assert.notEqual(status(r.payload), 0n);
    assert.equal(h.shmem.mappingCount, 1);
    assert.deepEqual(
      h.outcomes.map((o) => [o.name, o.ok, o.replied]),
      [
        ["BACKEND_SHMEM_MAP", true, undefined],
        ["BACKEND_SHARED_OBJECT_LOOKUP", false, 22n],
      ],
    );
  });

  test("crosvm-legacy: SHMEM map/unmap are always answered, even without NEED_REPLY", async () => {
    await using h = harness(CROSVM_LEGACY, false);
    await h.peer.send(1000, 0x1, crosvmMap(1, 0x2000n, 0x1000n), [h.fd]);
    let r = await h.peer.recv();
    assert.deepEqual([r.request, r.flags, status(r.payload)], [1000, 0x5, 0n]);
    assert.equal(h.shmem.mappings()[0]?.writable, true);
    // ids 9/10 do not exist in this dialect: refused (no reply asked, none sent), nothing mapped.
    await h.peer.send(9, 0x1, mmap40(1, 0n, 0x1000n), [h.fd]);
    const unmap = new Uint8Array(24);
    const v = new DataView(unmap.buffer);
    v.setUint8(0, 1);
    v.setBigUint64(8, 0x2000n, true);
    v.setBigUint64(16, 0x1000n, true);
    await h.peer.send(1001, 0x1, unmap);
    r = await h.peer.recv();
    assert.deepEqual([r.request, status(r.payload)], [1001, 0n]);
    assert.equal(h.shmem.mappingCount, 0);
    assert.equal(h.outcomes[1]?.ok, false);
  });

  test("with REPLY_ACK: a map over an fd past the file's end and an unmap that does not match are refused", async () => {
    await using h = harness(UPSTREAM, true);
    await h.peer.send(9, 0x9, mmap40(1, 0n, 0x20_0000n), [h.fd]);
    const r1 = await h.peer.recv();
    assert.notEqual(status(r1.payload), 0n);
    await h.peer.send(10, 0x9, mmap40(1, 0n, 0x1000n, 0n));
    const r2 = await h.peer.recv();
    assert.equal(status(r2.payload), 2n, "ENOENT-style status for no such mapping");
  });
});

describe("guest allocator", () => {
  test("aligns, frees, coalesces and reports exhaustion", () => {
    const a = new GuestAllocator(0x1000n, 0x3000n);
    const x = a.alloc(100);
    const y = a.alloc(16, 4096);
    assert.equal(x, 0x1000n);
    assert.equal(y, 0x2000n);
    assert.equal(a.allocatedBytes, 112n + 16n);
    a.free(x);
    a.free(y);
    assert.equal(a.alloc(0x3000), 0x1000n, "freed ranges coalesce back into one");
    assert.throws(
      () => a.alloc(16),
      (e: unknown) => isFrontendError(e) && e.code === "OUT_OF_MEMORY",
    );
    assert.throws(
      () => a.alloc(0),
      (e: unknown) => isFrontendError(e) && e.code === "BAD_ARGUMENT",
    );
  });
});

describe("virtio-blk config", () => {
  test("decodes what is there and no more", () => {
    const c = new Uint8Array(24);
    const v = new DataView(c.buffer);
    v.setBigUint64(0, 2048n, true);
    v.setUint32(12, 126, true);
    v.setUint32(20, 4096, true);
    const d = decodeBlkConfig(c);
    assert.deepEqual([d.capacity, d.segMax, d.blkSize, d.numQueues], [2048n, 126, 4096, undefined]);
    assert.throws(
      () => decodeBlkConfig(new Uint8Array(4)),
      (e: unknown) => isFrontendError(e) && e.code === "PROTOCOL",
    );
  });
});
