/**
 * Revision 2 of vhostkit's MEM_READ / MEM_WRITE on the front-end (docs/shmem.md#shared-data-buffer-revision-2):
 * the handler creates the shared buffer, hands it over with the reply to the first in-buffer
 * MEM_READ, and moves every in-buffer request's data through it; hostile in-buffer requests get
 * the failure reply and change nothing. The test plays the back-end on a real socketpair and maps
 * the received memfd itself.
 */
import assert from "node:assert/strict";
import { before, test } from "node:test";
import { DeviceSharedMemory, GuestAddressSpace, GuestRam, guestAddress } from "@vhostkit/regions";
import { Endpoint, Reactor, socketPair, type ReceivedMessage } from "@vhostkit/transport";
import { MAP, PROT, SEAL, closeFd, fstatSize, ftruncate, getSeals, mmap, munmap, nativeView, sealedMemfd } from "@vhostkit/transport/sys";
import { MEM_RW_FLAG_IN_BUFFER, MEM_RW_MAX_DATA, UPSTREAM, decodeMemAccessHeadFlags } from "@vhostkit/wire";
import { BackendRequestHandler, sharedMemoryPort, type BackendRequestOutcome } from "../src/index.js";

before(() => {
  Reactor.shared();
});

const READ = 11;
const WRITE = 12;
const BLOB = 1n << 32n; // shmid 1's base: a read-only 64 KiB mapping at offset 0

/** A handler serving 1 MiB of RAM and a read-only blob; the test is the back-end on `peer`. */
function harness(memRwBuffer: boolean) {
  const [mine, theirs] = socketPair();
  const ram = new GuestRam({ blocks: [{ guestPhysAddr: 0n, size: 1n << 20n }] });
  const shm = new DeviceSharedMemory({ sizes: new Map([[1, 1n << 20n]]), guestPhysAddr: guestAddress(BLOB) });
  const blobFd = sealedMemfd("mem-rw-buffer-blob", 1n << 16n);
  shm.map(1, 0n, 1n << 16n, blobFd, 0n, 0n);
  const space = new GuestAddressSpace(ram, [shm]);
  const outcomes: BackendRequestOutcome[] = [];
  const handler = new BackendRequestHandler(new Endpoint(mine), {
    dialect: UPSTREAM,
    replyAck: true,
    backendSendFd: false,
    sharedMemory: sharedMemoryPort({ memory: space }),
    onOutcome: (o) => outcomes.push(o),
    memRwBuffer,
  });
  const done = handler.start();
  const peer = new Endpoint(theirs);
  return {
    peer,
    space,
    outcomes,
    /** One in-buffer request (flags 1 unless given) and its reply. */
    async ask(request: number, gpa: bigint, size: number, flags: number = MEM_RW_FLAG_IN_BUFFER, fds: number[] = []): Promise<ReceivedMessage> {
      // Built by hand: hostile heads are past what encodeMemAccessHead allows.
      const head = new Uint8Array(16);
      const v = new DataView(head.buffer);
      v.setBigUint64(0, gpa, true);
      v.setUint32(8, size, true);
      v.setUint32(12, flags, true);
      await peer.send(request, 0x9, head, fds);
      return peer.recv();
    },
    async [Symbol.asyncDispose]() {
      peer.close();
      await done;
      shm.dispose();
      ram.dispose();
    },
  };
}

function status(m: ReceivedMessage): bigint {
  return new DataView(m.payload.buffer, m.payload.byteOffset, 8).getBigUint64(0, true);
}

test("the first in-buffer MEM_READ hands over a sealed 64 KiB memfd; reads and writes move their data through it", async () => {
  await using h = harness(true);
  const pattern = Uint8Array.from({ length: 5000 }, (_, i) => (i * 7) & 0xff);
  await h.space.write(guestAddress(0x1000n), pattern);
  const first = await h.ask(READ, 0x1000n, 5000);
  assert.equal(first.request, READ);
  assert.equal(first.flags, 0x5);
  assert.deepEqual(decodeMemAccessHeadFlags("BACKEND_MEM_READ", first.payload), { guestAddress: 0x1000n, size: 5000, flags: 1 });
  assert.equal(first.fds.length, 1, "the buffer comes with the first reply");
  const fd = first.fds[0]?.fd ?? -1;
  assert.deepEqual(fstatSize(fd), { size: BigInt(MEM_RW_MAX_DATA), regular: true });
  const seals = getSeals(fd);
  assert.equal(seals & (SEAL.SHRINK | SEAL.GROW | SEAL.SEAL), SEAL.SHRINK | SEAL.GROW | SEAL.SEAL);
  assert.notEqual(ftruncate(fd, 0n), 0, "the back-end cannot shrink it under the front-end's mapping");
  const m = mmap(0n, MEM_RW_MAX_DATA, PROT.READ | PROT.WRITE, MAP.SHARED, fd, 0n);
  const buffer = new Uint8Array(nativeView(m.ptr, MEM_RW_MAX_DATA));
  try {
    assert.deepEqual(buffer.subarray(0, 5000), pattern);
    // Later requests: no fd, the same buffer.
    await h.space.write(guestAddress(0x3000n), Uint8Array.of(9, 8, 7));
    const second = await h.ask(READ, 0x3000n, 3);
    assert.equal(second.fds.length, 0);
    assert.deepEqual([...buffer.subarray(0, 3)], [9, 8, 7]);
    buffer.set([1, 2, 3, 4], 0);
    const written = await h.ask(WRITE, 0x8000n, 4);
    assert.equal(written.payload.byteLength, 8);
    assert.equal(status(written), 0n);
    const back = new Uint8Array(4);
    await h.space.read(guestAddress(0x8000n), back);
    assert.deepEqual([...back], [1, 2, 3, 4]);
    // A full 64 KiB read across the RAM.
    const full = await h.ask(READ, 0n, MEM_RW_MAX_DATA);
    assert.equal(decodeMemAccessHeadFlags("BACKEND_MEM_READ", full.payload).size, MEM_RW_MAX_DATA);
    assert.deepEqual(buffer.subarray(0x1000, 0x1000 + 5000), pattern);
    assert.deepEqual(
      h.outcomes.map((o) => `${o.name} ${o.ok}`),
      ["BACKEND_MEM_READ true", "BACKEND_MEM_READ true", "BACKEND_MEM_WRITE true", "BACKEND_MEM_READ true"],
    );
  } finally {
    munmap(m.addr, MEM_RW_MAX_DATA);
    for (const f of first.fds) f.close();
  }
});

test("hostile in-buffer requests get the failure reply, change nothing, and the handler keeps serving", async () => {
  await using h = harness(true);
  const before = new Uint8Array(16);
  await h.space.read(guestAddress(0x2000n), before);
  // A write before any buffer was handed over: nothing to take the data from.
  const early = await h.ask(WRITE, 0x2000n, 16);
  assert.notEqual(status(early), 0n);
  // Unknown flag bits, more than 64 KiB, an fd attached: malformed, no buffer handed over.
  for (const [flags, size, fds] of [
    [3, 16, []],
    [MEM_RW_FLAG_IN_BUFFER, MEM_RW_MAX_DATA + 1, []],
    [MEM_RW_FLAG_IN_BUFFER, 16, [sealedMemfd("mem-rw-buffer-stray", 4096n)]],
  ] as const) {
    const r = await h.ask(READ, 0x2000n, size, flags, [...fds]);
    for (const f of fds) closeFd(f);
    assert.equal(r.payload.byteLength, 16);
    assert.equal(new DataView(r.payload.buffer, r.payload.byteOffset, 16).getUint32(8, true), 0, "size 0: refused");
    assert.equal(r.fds.length, 0, `flags ${flags} size ${size}: no buffer with a malformed request`);
  }
  // A range nothing backs: refused, but the buffer comes with this first well-formed read.
  const unmapped = await h.ask(READ, 0x5_0000_0000n, 16);
  assert.equal(decodeMemAccessHeadFlags("BACKEND_MEM_READ", unmapped.payload).size, 0);
  assert.equal(unmapped.fds.length, 1);
  for (const f of unmapped.fds) f.close();
  // Into the read-only blob: refused before a byte moves.
  const ro = await h.ask(WRITE, BLOB, 16);
  assert.notEqual(status(ro), 0n);
  const blob = new Uint8Array(16);
  await h.space.read(guestAddress(BLOB), blob);
  assert.deepEqual([...blob], new Array(16).fill(0));
  // Still serving: a good read.
  const ok = await h.ask(READ, 0x2000n, 16);
  assert.equal(decodeMemAccessHeadFlags("BACKEND_MEM_READ", ok.payload).size, 16);
  assert.equal(ok.fds.length, 0);
  const after = new Uint8Array(16);
  await h.space.read(guestAddress(0x2000n), after);
  assert.deepEqual(after, before, "the refused write wrote nothing");
  assert.deepEqual(
    h.outcomes.map((o) => o.ok),
    [false, false, false, false, false, false, true],
  );
});

test("without revision 2 negotiated, an in-buffer head is malformed revision 1 (non-zero padding): refused, no buffer", async () => {
  await using h = harness(false);
  const r = await h.ask(READ, 0x1000n, 16);
  assert.equal(r.payload.byteLength, 16);
  assert.equal(new DataView(r.payload.buffer, r.payload.byteOffset, 16).getUint32(8, true), 0);
  assert.equal(r.fds.length, 0);
  const w = await h.ask(WRITE, 0x1000n, 16);
  assert.notEqual(status(w), 0n);
});
