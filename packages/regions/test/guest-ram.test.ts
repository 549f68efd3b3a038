import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { dupCloexec, getSeals, SEAL } from "@vhostkit/transport/sys";
import {
  DeviceSharedMemory,
  GuestAddressSpace,
  GuestRam,
  guestAddress,
  isRegionError,
  MemoryTable,
  SYNTHETIC_USER_BASE,
  translateRange,
  type RegionErrorCode,
} from "../src/index.js";
import { fdCount, fdOpen, memfd } from "./helpers/proc-maps.js";

const P = 0x1000n;
const MiB = 0x10_0000n;

function rejects(code: RegionErrorCode, f: () => unknown): void {
  assert.throws(f, (e: unknown) => isRegionError(e) && e.code === code);
}

describe("GuestRam", () => {
  test("sealed memfds described as memory-table regions with synthetic user addresses", () => {
    using ram = new GuestRam({
      blocks: [
        { guestPhysAddr: 4n * MiB, size: MiB },
        { guestPhysAddr: 0n, size: 2n * MiB },
      ],
    });
    const table = ram.memoryTable();
    assert.deepEqual(
      table.map((r) => [r.guestPhysAddr, r.memorySize, r.userspaceAddr, r.mmapOffset]),
      [
        [0n, 2n * MiB, SYNTHETIC_USER_BASE, 0n],
        [4n * MiB, MiB, SYNTHETIC_USER_BASE + 4n * MiB, 0n],
      ],
    );
    for (const r of table) assert.equal(getSeals(r.fd) & (SEAL.SHRINK | SEAL.GROW), SEAL.SHRINK | SEAL.GROW);
    assert.equal(ram.userAddressOf(guestAddress(4n * MiB + 8n)), SYNTHETIC_USER_BASE + 4n * MiB + 8n);
    rejects("UNMAPPED", () => ram.userAddressOf(guestAddress(3n * MiB)));
  });

  test("front-end RAM shared with a back-end memory table (fds as SCM_RIGHTS would dup them)", async () => {
    const before = fdCount();
    using ram = new GuestRam({
      blocks: [
        { guestPhysAddr: 0n, size: MiB },
        { guestPhysAddr: MiB, size: MiB },
      ],
      userAddrBase: 0n,
    });
    using backend = new MemoryTable();
    backend.setMemTable(ram.memoryTable().map((r) => ({ ...r, fd: dupCloexec(r.fd) })));
    await ram.write(guestAddress(MiB - 2n), new Uint8Array([1, 2, 3, 4]));
    const out = new Uint8Array(4);
    await backend.read(guestAddress(MiB - 2n), out);
    assert.deepEqual([...out], [1, 2, 3, 4]);
    const ring = backend.translateUser?.(ram.userAddressOf(guestAddress(MiB)), 2);
    assert.ok(ring?.ok);
    assert.deepEqual([...ring.span.bytes], [3, 4]);
    backend.dispose();
    ram.dispose();
    assert.equal(fdCount(), before);
  });

  const bad: [string, RegionErrorCode, () => unknown][] = [
    ["zero size", "ZERO_SIZE", () => new GuestRam({ blocks: [{ guestPhysAddr: 0n, size: 0n }] })],
    ["unaligned address", "MISALIGNED", () => new GuestRam({ blocks: [{ guestPhysAddr: 1n, size: P }] })],
    ["unaligned size", "MISALIGNED", () => new GuestRam({ blocks: [{ guestPhysAddr: 0n, size: P + 1n }] })],
    [
      "overlapping blocks",
      "OVERLAP",
      () =>
        new GuestRam({
          blocks: [
            { guestPhysAddr: 0n, size: 2n * P },
            { guestPhysAddr: P, size: P },
          ],
        }),
    ],
    ["end wraps u64", "OVERFLOW", () => new GuestRam({ blocks: [{ guestPhysAddr: (1n << 64n) - P, size: 2n * P }] })],
  ];
  for (const [name, code, make] of bad) {
    test(`rejects ${name} and leaves nothing open`, () => {
      const before = fdCount();
      rejects(code, make);
      assert.equal(fdCount(), before);
    });
  }
});

describe("GuestAddressSpace", () => {
  test("RAM + shared memory: reads cross mappings, misses on reserved pages, writes refused on read-only", async () => {
    using ram = new GuestRam({ blocks: [{ guestPhysAddr: 0n, size: MiB }] });
    using dev = new DeviceSharedMemory({ sizes: [16n * P], guestPhysAddr: guestAddress(MiB) });
    using dev2 = new DeviceSharedMemory({ sizes: [4n * P], guestPhysAddr: guestAddress(MiB + 16n * P) });
    const space = new GuestAddressSpace(ram, [dev, dev2]);
    const rw = memfd(2n * P);
    const ro = memfd(P);
    dev.map(0, 0n, 2n * P, rw, 0n, 1n);
    dev.map(0, 2n * P, P, ro, 0n, 0n);
    await space.write(guestAddress(MiB + 2n * P - 2n), new Uint8Array([5, 6])); // end of the RW mapping
    await assert.rejects(space.write(guestAddress(MiB + 2n * P - 1n), new Uint8Array([7, 7])), (e: unknown) => isRegionError(e) && e.code === "READ_ONLY");
    const out = new Uint8Array(3);
    await space.read(guestAddress(MiB + 2n * P - 2n), out);
    assert.deepEqual([...out], [5, 6, 0]);
    const span = space.translate(guestAddress(MiB + 2n * P), 100);
    assert.ok(span.ok);
    assert.equal(span.span.writable, false);
    assert.deepEqual(space.translate(guestAddress(MiB + 3n * P), 1), { ok: false, miss: { kind: "unmapped", addr: MiB + 3n * P } });
    assert.equal(space.translate(guestAddress(MiB + 16n * P), 1).ok, false);
    await assert.rejects(space.read(guestAddress(MiB + 3n * P - 1n), new Uint8Array(2)), (e: unknown) => isRegionError(e) && e.code === "UNMAPPED");
    await space.read(guestAddress(MiB - 1n), new Uint8Array(2)); // RAM end into the RW mapping
    await assert.rejects(space.read(guestAddress(MiB + 20n * P - 1n), new Uint8Array(2)), (e: unknown) => isRegionError(e) && e.code === "UNMAPPED");
    // translateRange: the same checks, as views (RAM end + RW mapping + RO mapping).
    const views = translateRange(space, guestAddress(MiB - 4n), 4 + 3 * Number(P), false);
    assert.deepEqual(
      views.map((v) => [v.bytes.length, v.writable]),
      [
        [4, true],
        [2 * Number(P), true],
        [Number(P), false],
      ],
    );
    rejects("READ_ONLY", () => translateRange(space, guestAddress(MiB + 2n * P - 1n), 2, true));
    rejects("UNMAPPED", () => translateRange(space, guestAddress(MiB + 3n * P - 1n), 2, false));
    rejects("UNMAPPED", () =>
      translateRange({ translate: () => ({ ok: true, span: { bytes: new Uint8Array(0), writable: true } }) }, guestAddress(0n), 1, false),
    );
    await space.write(guestAddress(10n), new Uint8Array([9]));
    const nine = new Uint8Array(1);
    await ram.read(guestAddress(10n), nine);
    assert.equal(nine[0], 9);
    space.removeDevice(dev);
    assert.equal(space.translate(guestAddress(MiB), 1).ok, false);
    assert.equal(fdOpen(rw), true);
  });

  test("rejects a device window overlapping RAM or another device", () => {
    using ram = new GuestRam({ blocks: [{ guestPhysAddr: 0n, size: MiB }] });
    using dev = new DeviceSharedMemory({ sizes: [P], guestPhysAddr: guestAddress(MiB - P) });
    rejects("OVERLAP", () => new GuestAddressSpace(ram, [dev]));
    using a = new DeviceSharedMemory({ sizes: [2n * P], guestPhysAddr: guestAddress(2n * MiB) });
    using b = new DeviceSharedMemory({ sizes: [P], guestPhysAddr: guestAddress(2n * MiB + P) });
    const space = new GuestAddressSpace(ram, [a]);
    rejects("OVERLAP", () => space.addDevice(b));
  });
});
