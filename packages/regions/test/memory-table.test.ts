import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { closeFd, dupCloexec } from "@vhostkit/transport/sys";
import { guestAddress, isRegionError, MemoryTable, userAddress, type MemoryRegionWithFd, type RegionErrorCode } from "../src/index.js";
import { openSync } from "node:fs";
import { fdCount, fdOpen, memfd, memfdVmas } from "./helpers/proc-maps.js";

const P = 0x1000n;
const U = 0x7f00_0000_0000n;

/** A region of `pages` pages at gpa, uaddr U + gpa, from a fresh memfd with `fileOffset` before it. */
function region(gpa: bigint, pages: bigint, fileOffset = 0n): MemoryRegionWithFd & { fd: number } {
  return { guestPhysAddr: gpa, memorySize: pages * P, userspaceAddr: U + gpa, mmapOffset: fileOffset, fd: memfd(fileOffset + pages * P) };
}

function rejects(code: RegionErrorCode, f: () => unknown): void {
  assert.throws(f, (e: unknown) => isRegionError(e) && e.code === code);
}

describe("MemoryTable", () => {
  test("ADD_MEM_REG with a non-zero mmap_offset maps the right file bytes; fds closed once", async () => {
    const before = fdCount();
    using t = new MemoryTable();
    assert.equal(t.maxSlots, 509);
    const r = region(0x10_0000n, 4n, 2n * P);
    // Write a marker through a second mapping of the same file at file offset 2 pages.
    const keep = dupCloexec(r.fd);
    t.addRegion(r);
    assert.equal(fdOpen(r.fd), false);
    using probe = new MemoryTable();
    probe.addRegion({ guestPhysAddr: 0n, memorySize: 4n * P, userspaceAddr: 0n, mmapOffset: 0n, fd: keep });
    await probe.write(guestAddress(2n * P), new Uint8Array([0xaa]));
    const out = new Uint8Array(1);
    await t.read(guestAddress(0x10_0000n), out);
    assert.equal(out[0], 0xaa);
    t.dispose();
    probe.dispose();
    assert.equal(fdCount(), before);
  });

  test("translateNumber answers exactly what translate answers, with no BigInt on a hit", () => {
    using t = new MemoryTable();
    // Regions at low addresses and one just below 2^53, so the number bounds are exercised at the top.
    const high = (1n << 53n) - 4n * P;
    t.setMemTable([region(0n, 2n), region(2n * P, 1n), region(8n * P, 1n), region(high, 2n)]);
    const probes = [
      0n,
      0x10n,
      P - 1n,
      P + 0x10n,
      2n * P,
      3n * P - 1n,
      3n * P,
      7n * P + 0xfffn,
      8n * P,
      9n * P,
      high - 1n,
      high,
      high + P + 0x123n,
      high + 2n * P,
    ];
    for (const addr of probes) {
      for (const len of [1, 0x10, 0x3000, 0]) {
        const a = t.translate(guestAddress(addr), len);
        const b = t.translateNumber(Number(addr), len);
        assert.equal(b.ok, a.ok, `0x${addr.toString(16)}+${len}`);
        if (a.ok && b.ok) {
          assert.equal(b.span.bytes.length, a.span.bytes.length);
          assert.equal(b.span.writable, a.span.writable);
          b.span.bytes[0] = 0x5a;
          assert.equal(a.span.bytes[0], 0x5a, "the same guest bytes");
          a.span.bytes[0] = 0;
        } else assert.deepEqual(b, a);
      }
    }
    assert.throws(() => t.translateNumber(-1, 4), RangeError);
    assert.throws(() => t.translateNumber(2 ** 53, 4), RangeError);
    assert.throws(() => t.translateNumber(0.5, 4), RangeError);
  });

  test("translateInto fills a window over the same bytes translateNumber gives, false on every miss, the window untouched", () => {
    using t = new MemoryTable();
    const high = (1n << 53n) - 4n * P;
    t.setMemTable([region(0n, 2n), region(2n * P, 1n), region(8n * P, 1n), region(high, 2n)]);
    const empty = new Uint8Array(0);
    for (const addr of [0n, 0x10n, P - 1n, P + 0x10n, 2n * P, 3n * P - 1n, 3n * P, 7n * P + 0xfffn, 8n * P, high - 1n, high + P + 0x123n, high + 2n * P]) {
      for (const len of [1, 0x10, 0x3000, 0]) {
        const w = { view: empty, offset: -1, length: -1, writable: false };
        const a = t.translateNumber(Number(addr), len);
        const hit = t.translateInto(Number(addr), len, w);
        assert.equal(hit, a.ok, `0x${addr.toString(16)}+${len}`);
        if (!a.ok) {
          assert.deepEqual(w, { view: empty, offset: -1, length: -1, writable: false }, "a miss leaves the window as it was");
          continue;
        }
        assert.equal(w.length, a.span.bytes.length, "clamped at the region's end as translate is");
        assert.equal(w.writable, a.span.writable);
        assert.ok(w.offset >= 0 && w.offset + w.length <= w.view.length);
        w.view[w.offset] = 0x5a;
        assert.equal(a.span.bytes[0], 0x5a, "the same guest bytes");
        w.view[w.offset + w.length - 1] = 0xa5;
        assert.equal(a.span.bytes[w.length - 1], 0xa5);
        a.span.bytes[0] = 0;
        a.span.bytes[w.length - 1] = 0;
      }
    }
    const w = { view: empty, offset: 0, length: 0, writable: true };
    assert.throws(() => t.translateInto(-1, 4, w), RangeError);
    assert.throws(() => t.translateInto(2 ** 53, 4, w), RangeError);
  });

  test("translate: spans shortened at region boundaries, misses as typed results", () => {
    using t = new MemoryTable();
    t.setMemTable([region(0n, 2n), region(2n * P, 1n), region(8n * P, 1n)]);
    const a = t.translate(guestAddress(P + 0x10n), 0x3000);
    assert.ok(a.ok);
    assert.equal(a.span.bytes.length, 0x1000 - 0x10);
    assert.equal(a.span.writable, true);
    const b = t.translate(guestAddress(2n * P), 0x3000);
    assert.ok(b.ok);
    assert.equal(b.span.bytes.length, 0x1000);
    assert.deepEqual(
      t.translate(guestAddress(3n * P), 4),
      { ok: false, miss: { kind: "unmapped", addr: 3n * P, next: 8n * P } },
      "a miss says where the next region starts",
    );
    assert.deepEqual(t.translate(guestAddress(9n * P), 4), { ok: false, miss: { kind: "unmapped", addr: 9n * P, next: 1n << 64n } }, "none above: 2^64");
    assert.deepEqual(t.translate(guestAddress((1n << 64n) - 2n), 4), { ok: false, miss: { kind: "overflow", addr: (1n << 64n) - 2n, len: 4n } });
    assert.equal(t.translate(guestAddress(0n), 0).ok, false);
    const u = t.translateUser(userAddress(U + 8n * P + 0xff0n), 0x100);
    assert.ok(u.ok);
    assert.equal(u.span.bytes.length, 0x10);
    assert.equal(t.translateUser(userAddress(8n * P), 1).ok, false);
  });

  test("read/write cross regions and are all or nothing", async () => {
    using t = new MemoryTable();
    t.setMemTable([region(0n, 1n), region(P, 1n)]);
    await t.write(guestAddress(P - 2n), new Uint8Array([1, 2, 3, 4]));
    const out = new Uint8Array(4);
    await t.read(guestAddress(P - 2n), out);
    assert.deepEqual([...out], [1, 2, 3, 4]);
    await assert.rejects(t.write(guestAddress(2n * P - 1n), new Uint8Array([9, 9])), (e: unknown) => isRegionError(e) && e.code === "UNMAPPED");
    const last = new Uint8Array(1);
    await t.read(guestAddress(2n * P - 1n), last);
    assert.equal(last[0], 0);
  });

  test("SET_MEM_TABLE replaces atomically; a failing table leaves the old one mapped", async () => {
    const before = fdCount();
    using t = new MemoryTable();
    t.setMemTable([region(0n, 1n)]);
    await t.write(guestAddress(0n), new Uint8Array([7]));
    const bad = [region(0x100000n, 1n), region(0x200000n, 1n), { ...region(0x300000n, 1n), mmapOffset: 8n * P }];
    rejects("OUT_OF_BOUNDS", () => t.setMemTable(bad));
    for (const r of bad) assert.equal(fdOpen(r.fd), false);
    assert.deepEqual(
      t.regions().map((r) => r.guestPhysAddr),
      [0n],
    );
    const out = new Uint8Array(1);
    await t.read(guestAddress(0n), out);
    assert.equal(out[0], 7);
    t.setMemTable([region(0x100000n, 1n), region(0n, 2n)]);
    assert.deepEqual(
      t.regions().map((r) => r.guestPhysAddr),
      [0n, 0x100000n],
    );
    await t.read(guestAddress(0n), out);
    assert.equal(out[0], 0);
    t.reset();
    assert.equal(t.regionCount, 0);
    assert.equal(fdCount(), before);
  });

  test("pins: a removed region stops translating at once but stays mapped until the last pin goes", async () => {
    using t = new MemoryTable();
    const name = "pinned";
    const fd = memfd(2n * P, name);
    t.addRegion({ guestPhysAddr: 0n, memorySize: 2n * P, userspaceAddr: U, mmapOffset: 0n, fd });
    const span = t.translate(guestAddress(0n), 16);
    assert.ok(span.ok);
    span.span.bytes[0] = 0x5a;
    const first = t.pin();
    const second = t.pin();
    t.removeRegion({ guestPhysAddr: 0n, memorySize: 2n * P, userspaceAddr: U });
    assert.equal(t.translate(guestAddress(0n), 16).ok, false, "translation misses right after the removal");
    assert.equal(t.retiredCount, 1);
    assert.equal(memfdVmas(name), 1, "still mapped while pinned");
    assert.equal(span.span.bytes[0], 0x5a, "the old view is still readable");
    first();
    first(); // idempotent: does not count as the second release
    assert.equal(memfdVmas(name), 1, "one pin is still held");
    second();
    assert.equal(t.retiredCount, 0);
    assert.equal(memfdVmas(name), 0, "unmapped with the last pin");
    // Without pins a removal unmaps at once, as before.
    t.addRegion({ guestPhysAddr: 0n, memorySize: 2n * P, userspaceAddr: U, mmapOffset: 0n, fd: memfd(2n * P, name) });
    t.reset();
    assert.equal(memfdVmas(name), 0);
  });

  test("pins that always overlap (handlers on several queues) do not keep removed regions mapped for good", () => {
    using t = new MemoryTable();
    const name = "overlapping-pins";
    let held = t.pin();
    for (let i = 0; i < 50; i++) {
      t.addRegion({ guestPhysAddr: 0n, memorySize: P, userspaceAddr: U, mmapOffset: 0n, fd: memfd(P, name) });
      const next = t.pin(); // taken while the region is live: may view it
      t.removeRegion({ guestPhysAddr: 0n, memorySize: P, userspaceAddr: U });
      held(); // a pin from before this region was added goes; `next` still holds it
      assert.equal(memfdVmas(name), 1, `round ${i}: the region the live pin may view stays mapped`);
      held = next;
    }
    assert.ok(t.retiredCount <= 1, `${t.retiredCount} removed regions wait (at most the one still viewable)`);
    held();
    assert.equal(t.retiredCount, 0);
    assert.equal(memfdVmas(name), 0, "all unmapped");
  });

  test("REM_MEM_REG matches gpa + uaddr + size and closes any fd it got", () => {
    const before = fdCount();
    using t = new MemoryTable();
    t.addRegion(region(0n, 2n));
    t.addRegion(region(4n * P, 1n, P));
    const stray = memfd(P);
    rejects("NOT_FOUND", () => t.removeRegion({ guestPhysAddr: 0n, memorySize: P, userspaceAddr: U }, [stray]));
    assert.equal(fdOpen(stray), false);
    rejects("NOT_FOUND", () => t.removeRegion({ guestPhysAddr: 0n, memorySize: 2n * P, userspaceAddr: U + 1n }));
    t.removeRegion({ guestPhysAddr: 4n * P, memorySize: P, userspaceAddr: U + 4n * P, mmapOffset: 0n });
    assert.equal(t.translate(guestAddress(4n * P), 1).ok, false);
    t.removeRegion({ guestPhysAddr: 0n, memorySize: 2n * P, userspaceAddr: U });
    assert.equal(t.regionCount, 0);
    assert.equal(fdCount(), before);
  });

  const bad: [string, RegionErrorCode, (t: MemoryTable) => MemoryRegionWithFd & { fd: number }][] = [
    ["zero size", "ZERO_SIZE", () => ({ ...region(0x100000n, 1n), memorySize: 0n })],
    ["gpa + size wraps", "OVERFLOW", () => ({ ...region(0n, 1n), guestPhysAddr: (1n << 64n) - P / 2n })],
    ["uaddr + size wraps", "OVERFLOW", () => ({ ...region(0x100000n, 1n), userspaceAddr: (1n << 64n) - 1n })],
    ["mmap_offset + size wraps", "OVERFLOW", () => ({ ...region(0x100000n, 1n), mmapOffset: (1n << 64n) - P })],
    ["unaligned mmap_offset", "MISALIGNED", () => ({ ...region(0x100000n, 1n), mmapOffset: 8n })],
    ["overlap in GPA space", "OVERLAP", () => ({ ...region(P, 1n), userspaceAddr: 0x1_0000_0000n })],
    ["overlap in uaddr space", "OVERLAP", () => ({ ...region(0x100000n, 1n), userspaceAddr: U + P })],
    ["DUPLICATE", "DUPLICATE", () => region(0n, 2n)],
    ["past the end of the file", "OUT_OF_BOUNDS", () => ({ ...region(0x100000n, 1n), memorySize: 2n * P })],
    [
      "negative fd",
      "BAD_FD",
      () => {
        const r = region(0x100000n, 1n);
        closeFd(r.fd);
        return { ...r, fd: -1 };
      },
    ],
  ];
  for (const [name, code, make] of bad) {
    test(`ADD_MEM_REG and SET_MEM_TABLE reject: ${name} (fds closed, table unchanged)`, () => {
      using t = new MemoryTable();
      t.addRegion(region(0n, 2n));
      const before = fdCount();
      const r = make(t);
      rejects(code, () => t.addRegion(r));
      if (r.fd >= 0) assert.equal(fdOpen(r.fd), false);
      assert.equal(fdCount(), before);
      const table = [region(0n, 2n), make(t)];
      rejects(code, () => t.setMemTable(table));
      for (const x of table) if (x.fd >= 0) assert.equal(fdOpen(x.fd), false);
      assert.equal(t.regionCount, 1);
      assert.equal(fdCount(), before);
    });
  }

  test("SET_MEM_TABLE whose last mmap fails unmaps the new regions and keeps the old table", () => {
    using t = new MemoryTable();
    t.setMemTable([{ guestPhysAddr: 0n, memorySize: P, userspaceAddr: U, mmapOffset: 0n, fd: memfd(P, "mt-old") }]);
    const before = fdCount();
    const first = { guestPhysAddr: 0x100000n, memorySize: P, userspaceAddr: U + 0x100000n, mmapOffset: 0n, fd: memfd(P, "mt-new") };
    // A directory passes every check (not a regular file) but mmap refuses it (ENODEV).
    const dir = { guestPhysAddr: 0x200000n, memorySize: P, userspaceAddr: U + 0x200000n, mmapOffset: 0n, fd: openSync("/proc/self", "r") };
    assert.throws(
      () => t.setMemTable([first, dir]),
      (e: unknown) => isRegionError(e) && e.code === "MMAP_FAILED" && e.errno > 0 && e.syscall === "mmap",
    );
    assert.equal(memfdVmas("mt-new"), 0);
    assert.equal(memfdVmas("mt-old"), 1);
    assert.equal(fdCount(), before);
    assert.deepEqual(
      t.regions().map((r) => r.guestPhysAddr),
      [0n],
    );
    t.reset();
    assert.equal(memfdVmas("mt-old"), 0);
  });

  test("regions above 1 GiB: views are made per 1 GiB chunk, spans clamp at the chunk edge", async () => {
    const G = 1n << 30n;
    using t = new MemoryTable();
    // A sparse memfd: nothing is allocated until touched.
    t.addRegion({ guestPhysAddr: 0n, memorySize: G + 2n * P, userspaceAddr: U, mmapOffset: 0n, fd: memfd(G + 2n * P) });
    const a = t.translate(guestAddress(G - 8n), 16);
    assert.ok(a.ok);
    assert.equal(a.span.bytes.length, 8);
    await t.write(guestAddress(G - 4n), new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]));
    const out = new Uint8Array(8);
    await t.read(guestAddress(G - 4n), out);
    assert.deepEqual([...out], [1, 2, 3, 4, 5, 6, 7, 8]);
    const b = t.translate(guestAddress(G), 4);
    assert.ok(b.ok);
    assert.deepEqual([...b.span.bytes], [5, 6, 7, 8]);
  });

  test("slot cap: GET_MAX_MEM_SLOTS value and TOO_MANY", () => {
    using t = new MemoryTable({ maxSlots: 2 });
    t.addRegion(region(0n, 1n));
    t.addRegion(region(P, 1n));
    const r = region(2n * P, 1n);
    rejects("TOO_MANY", () => t.addRegion(r));
    assert.equal(fdOpen(r.fd), false);
    const three = [region(0n, 1n), region(P, 1n), region(2n * P, 1n)];
    rejects("TOO_MANY", () => t.setMemTable(three));
    for (const x of three) assert.equal(fdOpen(x.fd), false);
    rejects("BAD_CONFIG", () => new MemoryTable({ maxSlots: 0 }));
  });

  test("SET_MEM_TABLE duplicate and overlap inside the new table", () => {
    using t = new MemoryTable();
    const dup = [region(0n, 1n), region(0n, 1n)];
    rejects("DUPLICATE", () => t.setMemTable(dup));
    const ov = [region(0n, 2n), region(P, 1n)];
    rejects("OVERLAP", () => t.setMemTable(ov));
    for (const r of [...dup, ...ov]) assert.equal(fdOpen(r.fd), false);
  });

  test("after dispose every call that brings fds closes them and fails", () => {
    const t = new MemoryTable();
    t.dispose();
    const r = region(0n, 1n);
    rejects("DISPOSED", () => t.addRegion(r));
    assert.equal(fdOpen(r.fd), false);
  });
});
