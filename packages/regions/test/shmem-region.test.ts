import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { openSync } from "node:fs";
import { dupCloexec } from "@vhostkit/transport/sys";
import { DeviceSharedMemory, guestAddress, isRegionError, MemoryTable, SHMEM_MAP_FLAG_RW, type RegionErrorCode } from "../src/index.js";
import { hostWindowForTesting } from "../src/shmem-region.js";
import { fdCount, fdOpen, layout, memfd, memfdVmas, vmFlagsWithin } from "./helpers/proc-maps.js";

const P = 0x1000n;
const BASE = guestAddress(0x1_0000_0000n);

function device(
  sizes: readonly bigint[] = [16n * P, 0n, 8n * P],
  extra: { maxMappingsPerRegion?: number; maxMappingsPerDevice?: number } = {},
): DeviceSharedMemory {
  return new DeviceSharedMemory({ sizes, guestPhysAddr: BASE, ...extra });
}

function win(dev: DeviceSharedMemory, shmid: number): bigint {
  const w = hostWindowForTesting(dev, shmid);
  assert.ok(w !== undefined);
  return w;
}

function rejects(code: RegionErrorCode, f: () => unknown): void {
  assert.throws(f, (e: unknown) => isRegionError(e) && e.code === code);
}

describe("DeviceSharedMemory reservations", () => {
  test("places regions back to back in shmid order and reserves each PROT_NONE", () => {
    using dev = device();
    assert.deepEqual(
      dev.regions().map((r) => [r.shmid, r.size, r.guestPhysAddr]),
      [
        [0, 16n * P, BASE],
        [2, 8n * P, BASE + 16n * P],
      ],
    );
    assert.equal(dev.size, 24n * P);
    assert.deepEqual(layout(win(dev, 0), 16n * P), ["0+10000:---p"]);
    assert.deepEqual(layout(win(dev, 2), 8n * P), ["0+8000:---p"]);
    // The reservations commit no memory: MAP_NORESERVE ("nr"), and nothing readable or writable.
    for (const [shmid, pages] of [
      [0, 16n],
      [2, 8n],
    ] as const) {
      const vmas = vmFlagsWithin(win(dev, shmid), pages * P);
      assert.equal(vmas.length, 1);
      assert.ok(vmas[0]!.includes("nr") && !vmas[0]!.some((f) => f === "rd" || f === "wr" || f === "ex"), `shmid ${shmid}: ${vmas[0]!.join(" ")}`);
    }
  });

  test("map RW / RO shows rw-s / r--s; unmap restores ---p with no hole; reset keeps reservations", () => {
    const before = fdCount();
    using dev = device();
    const w = win(dev, 0);
    const a = memfd(4n * P);
    const b = memfd(4n * P);
    const m = dev.map(0, 2n * P, 2n * P, a, 0n, SHMEM_MAP_FLAG_RW);
    assert.equal(m.guestPhysAddr, BASE + 2n * P);
    assert.equal(m.writable, true);
    dev.map(0, 8n * P, 1n * P, b, 3n * P, 0n);
    assert.deepEqual(layout(w, 16n * P), ["0+2000:---p", "2000+2000:rw-s", "4000+4000:---p", "8000+1000:r--s", "9000+7000:---p"]);
    assert.equal(fdCount(), before + 2);
    dev.unmap(0, 2n * P, 2n * P);
    assert.equal(fdOpen(a), false);
    // The restored placeholder is a reservation like the rest: PROT_NONE and MAP_NORESERVE.
    for (const flags of vmFlagsWithin(w, 8n * P)) assert.ok(flags.includes("nr") && !flags.includes("rd"), flags.join(" "));
    assert.deepEqual(layout(w, 16n * P), ["0+8000:---p", "8000+1000:r--s", "9000+7000:---p"]);
    dev.reset();
    assert.deepEqual(layout(w, 16n * P), ["0+10000:---p"]);
    assert.equal(dev.mappingCount, 0);
    assert.equal(fdCount(), before);
  });

  test("dispose unmaps every reservation and closes every fd", () => {
    const before = fdCount();
    using dev = device();
    const w0 = win(dev, 0);
    dev.map(0, 0n, P, memfd(P, "dispose-blob"), 0n, 1n);
    assert.equal(memfdVmas("dispose-blob"), 1);
    dev.dispose();
    dev.dispose();
    // The freed range may already hold a mapping of the runtime's own threads: check for ours.
    assert.equal(memfdVmas("dispose-blob"), 0, "the blob mapping is gone");
    assert.notDeepEqual(layout(w0, 16n * P), ["0+10000:---p"], "the reservation is gone");
    assert.equal(fdCount(), before);
    rejects("DISPOSED", () => dev.map(0, 0n, P, memfd(P), 0n, 0n));
    assert.equal(fdCount(), before);
  });

  test("data written through one mapping is visible through the fd's other mapping", async () => {
    using dev = device();
    const fd = memfd(4n * P);
    const dup = dupCloexec(fd);
    dev.map(0, 0n, 4n * P, fd, 0n, 1n);
    dev.map(2, 0n, 4n * P, dup, 0n, 0n);
    await dev.write(guestAddress(BASE + 5n), new Uint8Array([1, 2, 3]));
    const out = new Uint8Array(3);
    await dev.read(guestAddress(BASE + 16n * P + 5n), out);
    assert.deepEqual([...out], [1, 2, 3]);
  });
});

describe("DeviceSharedMemory.map rejections (fd always closed)", () => {
  const cases: [string, RegionErrorCode, (dev: DeviceSharedMemory, fd: number) => unknown][] = [
    ["unknown shmid", "UNKNOWN_SHMID", (d, fd) => d.map(7, 0n, P, fd, 0n, 0n)],
    ["zero-sized shmid", "UNKNOWN_SHMID", (d, fd) => d.map(1, 0n, P, fd, 0n, 0n)],
    ["len 0", "ZERO_SIZE", (d, fd) => d.map(0, 0n, 0n, fd, 0n, 0n)],
    ["unaligned shm_offset", "MISALIGNED", (d, fd) => d.map(0, 1n, P, fd, 0n, 0n)],
    ["unaligned len", "MISALIGNED", (d, fd) => d.map(0, 0n, P + 1n, fd, 0n, 0n)],
    ["unaligned fd_offset", "MISALIGNED", (d, fd) => d.map(0, 0n, P, fd, 8n, 0n)],
    ["shm_offset + len wraps", "OVERFLOW", (d, fd) => d.map(0, (1n << 64n) - P, P, fd, 0n, 0n)],
    ["fd_offset + len wraps", "OVERFLOW", (d, fd) => d.map(0, 0n, P, fd, (1n << 64n) - P, 0n)],
    ["past the region end", "OUT_OF_BOUNDS", (d, fd) => d.map(0, 15n * P, 2n * P, fd, 0n, 0n)],
    ["past the end of the file", "OUT_OF_BOUNDS", (d, fd) => d.map(0, 8n * P, 8n * P, fd, 0n, 0n)],
    ["unknown flag bits", "BAD_FLAGS", (d, fd) => d.map(0, 0n, P, fd, 0n, 2n)],
    ["negative flags", "BAD_FLAGS", (d, fd) => d.map(0, 0n, P, fd, 0n, -1n)],
    ["overlap with a mapping", "OVERLAP", (d, fd) => d.map(0, 3n * P, 2n * P, fd, 0n, 0n)],
    ["overlap at the start of a mapping", "OVERLAP", (d, fd) => d.map(0, 4n * P, P, fd, 0n, 0n)],
    ["overlap across a mapping", "OVERLAP", (d, fd) => d.map(0, 3n * P, 4n * P, fd, 0n, 0n)],
  ];
  for (const [name, code, call] of cases) {
    test(name, () => {
      using dev = device();
      dev.map(0, 4n * P, 2n * P, memfd(2n * P), 0n, 1n);
      const w = win(dev, 0);
      const snapshot = layout(w, 16n * P);
      const before = fdCount();
      const fd = memfd(4n * P);
      rejects(code, () => call(dev, fd));
      assert.equal(fdOpen(fd), false);
      assert.equal(fdCount(), before);
      assert.deepEqual(layout(w, 16n * P), snapshot);
      assert.equal(dev.mappingCount, 1);
    });
  }

  test("an unsealed memfd is refused (the back-end could truncate it under us), unless allowed", () => {
    using dev = device();
    const before = fdCount();
    const fd = memfd(4n * P, "unsealed", false);
    rejects("UNSEALED", () => dev.map(0, 0n, P, fd, 0n, 0n));
    assert.equal(fdOpen(fd), false);
    assert.equal(fdCount(), before);
    assert.equal(dev.mappingCount, 0);
    using trusting = new DeviceSharedMemory({ sizes: [16n * P], guestPhysAddr: BASE, requireSealedFds: false });
    trusting.map(0, 0n, P, memfd(P, "unsealed", false), 0n, 0n);
    assert.equal(trusting.mappingCount, 1);
  });

  test("bad fd: negative, and an owner already closed", () => {
    using dev = device();
    rejects("BAD_FD", () => dev.map(0, 0n, P, -1, 0n, 0n));
    rejects("BAD_FD", () =>
      dev.map(
        0,
        0n,
        P,
        {
          transfer: () => {
            throw new RangeError("closed");
          },
        },
        0n,
        0n,
      ),
    );
  });

  test("an fd owner is transferred exactly once and the fd closed on unmap", () => {
    using dev = device();
    const fd = memfd(P);
    let transfers = 0;
    dev.map(0, 0n, P, { transfer: () => (transfers++, fd) }, 0n, 0n);
    assert.equal(transfers, 1);
    assert.equal(fdOpen(fd), true);
    dev.unmap(0, 0n, P);
    assert.equal(fdOpen(fd), false);
  });

  test("mmap failure (fd not mappable) leaves the reservation intact", () => {
    using dev = device();
    const w = win(dev, 0);
    // A directory fd passes every check (not a regular file) but mmap refuses it (ENODEV).
    const dirFd = openSync("/proc/self", "r");
    const before = fdCount();
    rejects("MMAP_FAILED", () => dev.map(0, 0n, P, dirFd, 0n, 0n));
    assert.equal(fdCount(), before - 1);
    assert.deepEqual(layout(w, 16n * P), ["0+10000:---p"]);
  });

  test("per-region and per-device caps", () => {
    using dev = device([16n * P, 16n * P], { maxMappingsPerRegion: 2, maxMappingsPerDevice: 3 });
    const before = fdCount();
    dev.map(0, 0n, P, memfd(P), 0n, 0n);
    dev.map(0, P, P, memfd(P), 0n, 0n);
    const f1 = memfd(P);
    rejects("TOO_MANY", () => dev.map(0, 2n * P, P, f1, 0n, 0n));
    dev.map(1, 0n, P, memfd(P), 0n, 0n);
    rejects("TOO_MANY", () => dev.map(1, P, P, memfd(P), 0n, 0n));
    assert.equal(fdCount(), before + 3);
    dev.unmap(0, 0n, P);
    dev.map(1, P, P, memfd(P), 0n, 0n);
    assert.equal(dev.mappingCount, 3);
  });
});

describe("DeviceSharedMemory.unmap", () => {
  test("must match one mapping exactly", () => {
    using dev = device();
    dev.map(0, 2n * P, 4n * P, memfd(4n * P), 0n, 1n);
    dev.map(0, 6n * P, 2n * P, memfd(2n * P), 0n, 1n);
    rejects("NOT_FOUND", () => dev.unmap(0, 2n * P, 2n * P));
    rejects("NOT_FOUND", () => dev.unmap(0, 3n * P, 3n * P));
    rejects("NOT_FOUND", () => dev.unmap(0, 2n * P, 6n * P));
    rejects("NOT_FOUND", () => dev.unmap(0, 0n, P));
    rejects("UNKNOWN_SHMID", () => dev.unmap(1, 2n * P, 4n * P));
    rejects("NOT_FOUND", () => dev.unmap(2, 2n * P, 4n * P));
    assert.equal(dev.mappingCount, 2);
    dev.unmap(0, 6n * P, 2n * P);
    dev.unmap(0, 2n * P, 4n * P);
    assert.equal(dev.mappingCount, 0);
  });

  test("listeners see map and unmap with the data to propagate", () => {
    using dev = device();
    const events: string[] = [];
    const off = dev.addListener((e) =>
      events.push(
        `${e.kind} ${e.mapping.guestPhysAddr.toString(16)}+${e.mapping.len.toString(16)} ${e.mapping.fdOffset} ${e.mapping.writable} ${fdOpen(e.mapping.fd)}`,
      ),
    );
    dev.map(2, P, P, memfd(2n * P), P, 0n);
    dev.map(0, 0n, P, memfd(P), 0n, 1n);
    dev.unmap(2, P, P);
    dev.reset();
    off();
    dev.map(0, 0n, P, memfd(P), 0n, 1n);
    assert.deepEqual(events, [
      "map 100011000+1000 4096 false true",
      "map 100000000+1000 0 true true",
      "unmap 100011000+1000 4096 false true",
      "unmap 100000000+1000 0 true true",
    ]);
  });
});

describe("eager propagation from mapping events", () => {
  test("a map event is enough to ADD_MEM_REG the mapping into another back-end's table, unmap to REM it", async () => {
    using dev = device();
    using other = new MemoryTable();
    const off = dev.addListener((e) => {
      const r = {
        guestPhysAddr: e.mapping.guestPhysAddr,
        memorySize: e.mapping.len,
        userspaceAddr: 0x7f00_0000_0000n + e.mapping.guestPhysAddr,
        mmapOffset: e.mapping.fdOffset,
      };
      if (e.kind === "map") other.addRegion({ ...r, fd: dupCloexec(e.mapping.fd) });
      else other.removeRegion(r);
    });
    dev.map(0, 4n * P, 2n * P, memfd(4n * P), 2n * P, SHMEM_MAP_FLAG_RW);
    await dev.write(guestAddress(BASE + 4n * P + 1n), new Uint8Array([0x42]));
    const out = new Uint8Array(1);
    await other.read(guestAddress(BASE + 4n * P + 1n), out);
    assert.equal(out[0], 0x42);
    dev.unmap(0, 4n * P, 2n * P);
    assert.equal(other.regionCount, 0);
    off();
  });
});

describe("DeviceSharedMemory configuration", () => {
  const bad: [string, RegionErrorCode, () => unknown][] = [
    ["size not a page multiple", "MISALIGNED", () => device([P + 1n])],
    ["base not page-aligned", "MISALIGNED", () => new DeviceSharedMemory({ sizes: [P], guestPhysAddr: guestAddress(5n) })],
    ["more than 256 shmids", "BAD_CONFIG", () => device(new Array<bigint>(257).fill(0n))],
    ["shmid not a u8", "BAD_CONFIG", () => new DeviceSharedMemory({ sizes: new Map([[256, P]]), guestPhysAddr: BASE })],
    ["placement wraps u64", "OVERFLOW", () => new DeviceSharedMemory({ sizes: [P, P], guestPhysAddr: guestAddress((1n << 64n) - P) })],
    ["cap zero", "BAD_CONFIG", () => device([P], { maxMappingsPerRegion: 0 })],
  ];
  for (const [name, code, make] of bad) test(name, () => rejects(code, make));

  test("a map of sizes skips zero entries and sorts by shmid", () => {
    using dev = new DeviceSharedMemory({
      sizes: new Map([
        [5, P],
        [1, 2n * P],
        [3, 0n],
      ]),
      guestPhysAddr: BASE,
    });
    assert.deepEqual(
      dev.regions().map((r) => [r.shmid, r.guestPhysAddr - BASE]),
      [
        [1, 0n],
        [5, 2n * P],
      ],
    );
  });
});
