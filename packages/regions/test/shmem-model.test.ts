import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { DeviceSharedMemory, guestAddress, isRegionError, type RegionErrorCode } from "../src/index.js";
import { hostWindowForTesting } from "../src/shmem-region.js";
import { fdCount, layout, memfd, memfdVmas } from "./helpers/proc-maps.js";

const P = 0x1000n;
const SIZES = [32n, 16n]; // pages, shmid 0 and 1; shmid 2 is unknown
const PER_REGION = 4;
const PER_DEVICE = 6;
const MEMFD_NAME = "shmem-model-blob";

type Cmd =
  | {
      readonly op: "map";
      readonly shmid: number;
      readonly off: number;
      readonly len: number;
      readonly fdOff: number;
      readonly fileLen: number;
      readonly flags: number;
      readonly skew: number;
    }
  | { readonly op: "unmap"; readonly shmid: number; readonly off: number; readonly len: number; readonly pick: number | undefined }
  | { readonly op: "reset" };

interface ModelMapping {
  readonly off: number;
  readonly len: number;
  readonly writable: boolean;
}

const cmd: fc.Arbitrary<Cmd> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      op: fc.constant("map" as const),
      shmid: fc.constantFrom(0, 0, 0, 1, 1, 2),
      off: fc.integer({ min: 0, max: 33 }),
      len: fc.oneof({ weight: 1, arbitrary: fc.constant(0) }, { weight: 12, arbitrary: fc.integer({ min: 1, max: 4 }) }),
      fdOff: fc.integer({ min: 0, max: 2 }),
      fileLen: fc.integer({ min: 3, max: 8 }),
      flags: fc.constantFrom(0, 1, 1, 1, 2),
      skew: fc.constantFrom(0, 0, 0, 0, 0, 0, 0, 0, 0, 1),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant("unmap" as const),
      shmid: fc.constantFrom(0, 1, 2),
      off: fc.integer({ min: 0, max: 33 }),
      len: fc.integer({ min: 0, max: 4 }),
      // Most unmaps name a live mapping exactly (chosen at run time); the rest are random.
      pick: fc.option(fc.nat(), { freq: 4, nil: undefined }),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ op: "reset" as const }) },
);

function expectMap(model: ModelMapping[][], c: Extract<Cmd, { op: "map" }>): RegionErrorCode | undefined {
  const region = model[c.shmid];
  if (region === undefined) return "UNKNOWN_SHMID";
  if (c.flags > 1) return "BAD_FLAGS";
  if (c.len === 0) return "ZERO_SIZE";
  if (c.skew !== 0) return "MISALIGNED";
  if (c.off + c.len > SIZES[c.shmid]!) return "OUT_OF_BOUNDS";
  if (region.some((m) => c.off < m.off + m.len && m.off < c.off + c.len)) return "OVERLAP";
  if (region.length >= PER_REGION) return "TOO_MANY";
  if (model.flat().length >= PER_DEVICE) return "TOO_MANY";
  if (c.fdOff + c.len > c.fileLen) return "OUT_OF_BOUNDS";
  return undefined;
}

function expectedLayout(region: ModelMapping[], pages: bigint): string[] {
  const runs: { off: number; len: number; perms: string }[] = [];
  const merged: typeof runs = [];
  let at = 0;
  const hex = (n: number): string => (BigInt(n) * P).toString(16);
  for (const m of [...region].sort((a, b) => a.off - b.off)) {
    if (m.off > at) runs.push({ off: at, len: m.off - at, perms: "---p" });
    runs.push({ off: m.off, len: m.len, perms: m.writable ? "rw-s" : "r--s" });
    at = m.off + m.len;
  }
  if (at < Number(pages)) runs.push({ off: at, len: Number(pages) - at, perms: "---p" });
  // layout() joins adjacent VMAs with equal permissions, so the model does too.
  for (const r of runs) {
    const last = merged[merged.length - 1];
    if (last !== undefined && last.perms === r.perms) merged[merged.length - 1] = { ...last, len: last.len + r.len };
    else merged.push(r);
  }
  return merged.map((r) => `${hex(r.off)}+${hex(r.len)}:${r.perms}`);
}

test("random map/unmap/reset sequences agree with a simple model; no leaked VMAs or fds", () => {
  const baseFds = fdCount();
  let successes = 0;
  fc.assert(
    fc.property(fc.array(cmd, { minLength: 5, maxLength: 30, size: "max" }), (cmds) => {
      const dev = new DeviceSharedMemory({
        sizes: SIZES.map((s) => s * P),
        guestPhysAddr: guestAddress(0x8000_0000n),
        maxMappingsPerRegion: PER_REGION,
        maxMappingsPerDevice: PER_DEVICE,
      });
      const windows = SIZES.map((_, i) => hostWindowForTesting(dev, i)!);
      const model: ModelMapping[][] = SIZES.map(() => []);
      try {
        for (const raw of cmds) {
          if (raw.op === "reset") {
            dev.reset();
            for (const r of model) r.length = 0;
          } else if (raw.op === "map") {
            const c = raw.shmid === 1 ? { ...raw, off: raw.off % 18 } : raw;
            const want = expectMap(model, c);
            const fd = memfd(BigInt(c.fileLen) * P, MEMFD_NAME);
            try {
              dev.map(c.shmid, BigInt(c.off) * P + BigInt(c.skew), BigInt(c.len) * P, fd, BigInt(c.fdOff) * P, BigInt(c.flags));
              assert.equal(want, undefined, `map ${JSON.stringify(c)} succeeded, model says ${want}`);
              model[c.shmid]!.push({ off: c.off, len: c.len, writable: c.flags === 1 });
              successes++;
            } catch (e) {
              if (!isRegionError(e)) throw e;
              assert.equal(e.code, want, `map ${JSON.stringify(c)}`);
            }
          } else {
            const live = model.flatMap((r, shmid) => r.map((m) => ({ shmid, ...m })));
            const chosen = raw.pick !== undefined && live.length > 0 ? live[raw.pick % live.length]! : undefined;
            const u = chosen ?? raw;
            const region = model[u.shmid];
            const i = region?.findIndex((m) => m.off === u.off && m.len === u.len) ?? -1;
            try {
              dev.unmap(u.shmid, BigInt(u.off) * P, BigInt(u.len) * P);
              assert.ok(i >= 0, `unmap ${JSON.stringify(u)} succeeded, model has no such mapping`);
              region!.splice(i, 1);
            } catch (e) {
              if (!isRegionError(e)) throw e;
              assert.equal(e.code, region === undefined ? "UNKNOWN_SHMID" : "NOT_FOUND");
              assert.equal(i, -1);
            }
          }
          assert.equal(dev.mappingCount, model.flat().length);
          assert.equal(fdCount(), baseFds + model.flat().length);
          SIZES.forEach((pages, i) => assert.deepEqual(layout(windows[i]!, pages * P), expectedLayout(model[i]!, pages)));
        }
      } finally {
        dev.dispose();
      }
      // Once disposed, the range is free and the runtime's own threads (GC, JIT) may map memory
      // into it at any time: assert that nothing of ours is left (no mapping of our memfds, not the
      // PROT_NONE reservation spanning the window), not that the range is empty.
      assert.equal(memfdVmas(MEMFD_NAME), 0, "no mapping of a blob survives dispose");
      SIZES.forEach((pages, i) =>
        assert.notDeepEqual(layout(windows[i]!, pages * P), [`0+${(BigInt(pages) * P).toString(16)}:---p`], `region ${i}: reservation released`),
      );
      assert.equal(fdCount(), baseFds);
    }),
    { numRuns: 120 },
  );
  assert.ok(successes > 300, `only ${successes} successful maps: the generator is too strict`);
});
