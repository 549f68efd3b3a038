/**
 * Hostile-guest cases, one per rule (docs/virtqueue.md#hostile-guest-bounds): each gives a typed guest
 * error, marks the queue broken (later calls throw BROKEN with the cause), and never loops.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ChainBatch, DescFlag, SplitQueue, isVirtqueueError } from "../src/index.js";
import type { VirtqueueErrorCode } from "../src/index.js";
import type { GuestAddress } from "@vhostkit/regions";
import { BUF_A, BUF_B, HOLE, makeMemory, putDesc, ringAddresses, ringView } from "./helpers/ring-fixture.js";

const { NEXT, WRITE, INDIRECT } = DescFlag;
const size = 8;

interface Case {
  readonly name: string;
  readonly code: VirtqueueErrorCode;
  readonly indirect?: boolean;
  readonly lay: (
    d: (i: number, addr: bigint, len: number, flags: number, next: number) => void,
    table: DataView,
    availIdx: (n: number) => void,
    head: (slot: number, h: number) => void,
  ) => void;
}

const T = 0x4000; // indirect table offset inside region BUF_A
const cases: Case[] = [
  { name: "avail idx moves more than the queue size", code: "AVAIL_OVERRUN", lay: (_d, _t, idx) => idx(size + 1) },
  { name: "avail idx moves backwards (wraps to > size)", code: "AVAIL_OVERRUN", lay: (_d, _t, idx) => idx(0xffff) },
  { name: "head >= size", code: "BAD_HEAD", lay: (_d, _t, idx, head) => (head(0, size), idx(1)) },
  { name: "next >= size", code: "BAD_NEXT", lay: (d, _t, idx, head) => (d(0, BUF_A, 1, NEXT, size), head(0, 0), idx(1)) },
  { name: "a loop of one descriptor", code: "CHAIN_TOO_LONG", lay: (d, _t, idx, head) => (d(0, BUF_A, 1, NEXT, 0), head(0, 0), idx(1)) },
  {
    name: "a loop through every descriptor",
    code: "CHAIN_TOO_LONG",
    lay: (d, _t, idx, head) => {
      for (let i = 0; i < size; i++) d(i, BUF_A, 1, NEXT, (i + 1) % size);
      head(0, 3);
      idx(1);
    },
  },
  { name: "zero-length descriptor", code: "ZERO_LENGTH", lay: (d, _t, idx, head) => (d(0, BUF_A, 0, 0, 0), head(0, 0), idx(1)) },
  { name: "buffer wrapping past 2^64", code: "ADDRESS_WRAP", lay: (d, _t, idx, head) => (d(0, (1n << 64n) - 8n, 9, 0, 0), head(0, 0), idx(1)) },
  {
    name: "readable after writable",
    code: "BAD_ORDER",
    lay: (d, _t, idx, head) => (d(0, BUF_A, 1, WRITE | NEXT, 1), d(1, BUF_A, 1, 0, 0), head(0, 0), idx(1)),
  },
  {
    name: "chain over 2^32 bytes",
    code: "CHAIN_TOO_LONG",
    lay: (d, _t, idx, head) => (d(0, BUF_A, 0xffffffff, NEXT, 1), d(1, BUF_A, 2, 0, 0), head(0, 0), idx(1)),
  },
  {
    name: "INDIRECT without the feature",
    code: "INDIRECT_NOT_NEGOTIATED",
    lay: (d, _t, idx, head) => (d(0, BUF_A + BigInt(T), 16, INDIRECT, 0), head(0, 0), idx(1)),
  },
  {
    name: "INDIRECT|NEXT",
    code: "INDIRECT_WITH_NEXT",
    indirect: true,
    lay: (d, _t, idx, head) => (d(0, BUF_A + BigInt(T), 16, INDIRECT | NEXT, 1), head(0, 0), idx(1)),
  },
  {
    name: "indirect length not a multiple of 16",
    code: "BAD_INDIRECT_LENGTH",
    indirect: true,
    lay: (d, _t, idx, head) => (d(0, BUF_A + BigInt(T), 24, INDIRECT, 0), head(0, 0), idx(1)),
  },
  {
    name: "indirect length 0",
    code: "BAD_INDIRECT_LENGTH",
    indirect: true,
    lay: (d, _t, idx, head) => (d(0, BUF_A + BigInt(T), 0, INDIRECT, 0), head(0, 0), idx(1)),
  },
  {
    name: "indirect table too long",
    code: "BAD_INDIRECT_LENGTH",
    indirect: true,
    lay: (d, _t, idx, head) => (d(0, BUF_A, 0xfffffff0, INDIRECT, 0), head(0, 0), idx(1)),
  },
  { name: "indirect table unmapped", code: "INDIRECT_UNMAPPED", indirect: true, lay: (d, _t, idx, head) => (d(0, HOLE, 32, INDIRECT, 0), head(0, 0), idx(1)) },
  {
    name: "indirect table runs off mapped memory",
    code: "INDIRECT_UNMAPPED",
    indirect: true,
    lay: (d, _t, idx, head) => (d(0, BUF_B + 0x8000n - 16n, 32, INDIRECT, 0), head(0, 0), idx(1)),
  },
  {
    name: "nested indirect",
    code: "NESTED_INDIRECT",
    indirect: true,
    lay: (d, t, idx, head) => (putDesc(t, T, 0, BUF_A, 16, INDIRECT, 0), d(0, BUF_A + BigInt(T), 16, INDIRECT, 0), head(0, 0), idx(1)),
  },
  {
    name: "indirect next >= table size",
    code: "BAD_NEXT",
    indirect: true,
    lay: (d, t, idx, head) => (putDesc(t, T, 0, BUF_A, 16, NEXT, 2), d(0, BUF_A + BigInt(T), 32, INDIRECT, 0), head(0, 0), idx(1)),
  },
  {
    name: "loop inside an indirect table",
    code: "CHAIN_TOO_LONG",
    indirect: true,
    lay: (d, t, idx, head) => (
      putDesc(t, T, 0, BUF_A, 16, NEXT, 1), putDesc(t, T, 1, BUF_A, 16, NEXT, 0), d(0, BUF_A + BigInt(T), 32, INDIRECT, 0), head(0, 0), idx(1)
    ),
  },
  {
    name: "zero-length entry in an indirect table",
    code: "ZERO_LENGTH",
    indirect: true,
    lay: (d, t, idx, head) => (putDesc(t, T, 0, BUF_A, 0, 0, 0), d(0, BUF_A + BigInt(T), 16, INDIRECT, 0), head(0, 0), idx(1)),
  },
  {
    name: "readable after writable across direct -> indirect",
    code: "BAD_ORDER",
    indirect: true,
    lay: (d, t, idx, head) => (putDesc(t, T, 0, BUF_A, 4, 0, 0), d(0, BUF_A, 4, WRITE | NEXT, 1), d(1, BUF_A + BigInt(T), 16, INDIRECT, 0), head(0, 0), idx(1)),
  },
];

describe("hostile guest", () => {
  for (const c of cases) {
    test(c.name, () => {
      const memory = makeMemory(size);
      const a = ringAddresses(size);
      const dv = ringView(memory);
      const table = new DataView(memory.regions[1]!.bytes.buffer);
      const seen: string[] = [];
      const queue = new SplitQueue({ size, memory, addresses: a, indirect: c.indirect ?? false, onBroken: (e) => seen.push(e.code) });
      queue.start(0);
      c.lay(
        (i, addr, len, flags, next) => putDesc(dv, Number(a.desc), i, addr, len, flags, next),
        table,
        (n) => dv.setUint16(Number(a.avail) + 2, n, true),
        (slot, h) => dv.setUint16(Number(a.avail) + 4 + 2 * slot, h, true),
      );
      const batch = new ChainBatch(size);
      assert.throws(
        () => queue.pop(batch),
        (e) => isVirtqueueError(e) && e.code === c.code,
      );
      assert.equal(queue.brokenBy?.code, c.code);
      assert.deepEqual(seen, [c.code], "onBroken called once");
      assert.equal(queue.base, 0, "a failed pop consumes nothing");
      for (const op of [() => queue.pop(batch), () => queue.addUsed(0, 0), () => queue.publishUsed(), () => queue.enableNotification()]) {
        assert.throws(op, (e) => isVirtqueueError(e) && e.code === "BROKEN" && isVirtqueueError(e.cause) && e.cause.code === c.code);
      }
      // stop + start (the front-end re-configured the ring) clears the broken state.
      queue.stop();
      dv.setUint16(Number(a.avail) + 2, 0, true);
      queue.start(0);
      assert.equal(queue.pop(batch), 0);
    });
  }

  test("readable after writable is accepted when the device does not require order", () => {
    const memory = makeMemory(size);
    const a = ringAddresses(size);
    const dv = ringView(memory);
    putDesc(dv, Number(a.desc), 0, BUF_A, 1, WRITE | NEXT, 1);
    putDesc(dv, Number(a.desc), 1, BUF_A, 1, 0, 0);
    dv.setUint16(Number(a.avail) + 2, 1, true);
    const queue = new SplitQueue({ size, memory, addresses: a, requireReadableFirst: false });
    queue.start(0);
    assert.equal(queue.pop(new ChainBatch(size)), 1);
  });

  test("a GuestMemory that returns empty spans cannot make segment walks spin", () => {
    const memory = makeMemory(size);
    const a = ringAddresses(size);
    const dv = ringView(memory);
    putDesc(dv, Number(a.desc), 0, BUF_A, 64, 0, 0);
    dv.setUint16(Number(a.avail) + 2, 1, true);
    const faulty = {
      translate: (addr: GuestAddress, len: number) =>
        addr < BUF_A ? memory.translate(addr, len) : { ok: true as const, span: { bytes: new Uint8Array(0), writable: true } },
      read: memory.read.bind(memory),
      write: memory.write.bind(memory),
    };
    const queue = new SplitQueue({ size, memory: faulty, addresses: a });
    queue.start(0);
    const batch = new ChainBatch(size);
    assert.equal(queue.pop(batch), 1);
    const c = queue.segments(batch, 0);
    assert.equal(c.next(), true);
    assert.deepEqual([c.kind, c.len], ["remote", 64]);
    assert.equal(c.next(), false);
  });

  test("long chains grow the batch's descriptor store; addresses read back exactly", () => {
    const memory = makeMemory(size);
    const a = ringAddresses(size);
    const dv = ringView(memory);
    for (let i = 0; i < size; i++) putDesc(dv, Number(a.desc), i, (1n << 52n) + BigInt(i), 1, i < size - 1 ? NEXT : 0, i + 1);
    for (let s = 0; s < size; s++) dv.setUint16(Number(a.avail) + 4 + 2 * s, 0, true);
    dv.setUint16(Number(a.avail) + 2, size, true);
    const queue = new SplitQueue({ size, memory, addresses: a });
    queue.start(0);
    const batch = new ChainBatch(size, 1);
    assert.equal(queue.pop(batch), size);
    assert.ok(batch.descriptorCapacity >= size * size);
    for (let k = 0; k < size; k++) {
      assert.equal(batch.descriptorCount(k), size);
      const j = batch.starts[k]! + size - 1;
      assert.equal(batch.address(j), (1n << 52n) + BigInt(size - 1));
      assert.equal(batch.addressNumber(j), 2 ** 52 + size - 1);
    }
    putDesc(dv, Number(a.desc), 0, 1n << 60n, 1, 0, 0);
    dv.setUint16(Number(a.avail) + 2, size + 1, true);
    assert.equal(queue.pop(batch), 1);
    assert.equal(batch.addressNumber(0), -1, "above 2^53");
    assert.equal(batch.address(0), 1n << 60n);
  });

  test("caller errors do not break the queue", () => {
    const memory = makeMemory(size);
    const queue = new SplitQueue({ size, memory, addresses: ringAddresses(size) });
    assert.throws(
      () => queue.addUsed(0, 0),
      (e) => isVirtqueueError(e) && e.code === "NOT_STARTED",
    );
    queue.start(0);
    assert.throws(
      () => queue.addUsed(size, 0),
      (e) => isVirtqueueError(e) && e.code === "BAD_USED_ID",
    );
    for (let i = 0; i < size; i++) queue.addUsed(0, 0);
    assert.throws(
      () => queue.addUsed(0, 0),
      (e) => isVirtqueueError(e) && e.code === "USED_OVERFLOW",
    );
    assert.equal(queue.brokenBy, undefined);
    assert.throws(() => queue.setAvailEvent(1), RangeError);
  });
});
