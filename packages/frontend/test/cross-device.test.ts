/**
 * Cross-device buffers (issue 9), all real processes: device A (@vhostkit/backend, shared memory
 * regions) maps a 64 KiB blob holding a pattern into its shmid 1; device B (the RAM blk example) is
 * given a virtio-blk WRITE whose data buffer lies in A's mapping, then a READ back into RAM. Three
 * ways for B to reach A's memory: eager propagation (ADD_MEM_REG of A's mapping), vhostkit
 * MEM_READ/MEM_WRITE only, and "auto" (propagation until B's memory slots run out, then
 * MEM_READ/MEM_WRITE). Then A's mapping goes away while B still points at it: B's access fails
 * cleanly (IOERR), nothing crashes.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { guestAddress } from "@vhostkit/regions";
import { ProtocolFeature } from "@vhostkit/wire";
import { Guest, isFrontendError, SUPPORTED_PROTOCOL_FEATURES, type Device, type DriverQueue } from "../src/index.js";

const SHMEM_DEVICE = fileURLToPath(new URL("../../../apps/device/test/fixtures/own-backend.mjs", import.meta.url));
const RAM_BLK = fileURLToPath(new URL("../../backend/examples/ram-blk.mjs", import.meta.url));
const pattern = (i: number) => (i * 31 + 7) & 0xff; // what own-backend.mjs puts in its blob

interface Proc {
  child: ChildProcess;
  socket: string;
  lines: string[];
  line(text: string): Promise<void>;
}

function start(dir: string, name: string, script: string, args: string[]): Promise<Proc> {
  const socket = join(dir, `${name}.sock`);
  const child = spawn(process.execPath, [script, "--socket", socket, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  const kill = () => child.kill("SIGKILL");
  process.once("exit", kill);
  child.once("exit", () => process.off("exit", kill));
  const lines: string[] = [];
  const waiters: { text: string; resolve: () => void }[] = [];
  createInterface({ input: child.stdout! }).on("line", (l) => {
    lines.push(l);
    for (const w of waiters.splice(0))
      if (l.includes(w.text)) w.resolve();
      else waiters.push(w);
  });
  const proc: Proc = {
    child,
    socket,
    lines,
    line: (text) => (lines.some((l) => l.includes(text)) ? Promise.resolve() : new Promise((resolve) => waiters.push({ text, resolve }))),
  };
  return proc.line("listening").then(() => proc);
}

async function stop(p: Proc): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return; // exited, or killed by a test
  const exited = new Promise((r) => p.child.once("exit", r));
  p.child.kill("SIGTERM");
  await exited;
}

/** Device A (shared memory regions, `aArgs`) and device B (RAM blk, `bArgs`), each in its own process, and one Guest; all torn down after `body`. */
async function withPair(aArgs: string[], bArgs: string[], body: (a: Proc, b: Proc, guest: Guest) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "vhostkit-cross-"));
  const a = await start(dir, "a", SHMEM_DEVICE, ["--device", "shmem", ...aArgs]);
  const b = await start(dir, "b", RAM_BLK, ["--size-mib", "1", ...bArgs]);
  const guest = new Guest();
  try {
    await body(a, b, guest);
  } finally {
    await guest.close();
    await stop(a);
    await stop(b);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** One virtio-blk request on B's queue with the data buffer at `data` (any guest-physical address). */
async function blk(guest: Guest, q: DriverQueue, type: number, data: bigint, len: number): Promise<number> {
  const hdr = guest.allocator.alloc(16);
  const status = guest.allocator.alloc(1);
  const h = new Uint8Array(16);
  new DataView(h.buffer).setUint32(0, type, true);
  new DataView(h.buffer).setBigUint64(8, 16n, true);
  await guest.space.write(hdr, h);
  await guest.space.write(status, new Uint8Array([0xff]));
  const buf = { addr: data, len };
  await (type === 1
    ? q.submit([{ addr: hdr, len: 16 }, buf], [{ addr: status, len: 1 }])
    : q.submit([{ addr: hdr, len: 16 }], [buf, { addr: status, len: 1 }]));
  const s = new Uint8Array(1);
  await guest.space.read(status, s);
  guest.allocator.free(hdr);
  guest.allocator.free(status);
  return s[0] ?? -1;
}

/** Start B, then A, whose one SHMEM_MAP must be refused: returns the reason; nothing stays mapped. */
async function refusedMap(a: Proc, b: Proc, guest: Guest): Promise<string> {
  const devB = await guest.addDevice({ socketPath: b.socket });
  await devB.start({ features: 0n, queues: [0] });
  const outcomes: { name: string; ok: boolean; reason?: string }[] = [];
  const devA = await guest.addDevice({ socketPath: a.socket, onBackendRequest: (o) => outcomes.push(o) });
  await devA.start({ queues: [0] });
  await a.line("map-failed");
  const map = outcomes.find((o) => o.name === "BACKEND_SHMEM_MAP");
  assert.equal(map?.ok, false);
  assert.equal(guest.liveMappings().length, 0, "nothing stays mapped");
  return map?.reason ?? "";
}

type Mode = "propagate" | "mem-rw" | "auto";

test("auto policy, B has no free slot and no MEM_READ/MEM_WRITE: A's SHMEM_MAP is refused with the reason", async () => {
  await withPair([], ["--max-slots", "1"], async (a, b, guest) => {
    assert.match(await refusedMap(a, b, guest), /could not reach the mapping: no free memory slot \(1 of 1 used\) and no MEM_READ\/MEM_WRITE/);
  });
});

test("B started after A mapped, with no free slot and no MEM_READ/MEM_WRITE: B's start fails with the reason", async () => {
  await withPair([], ["--max-slots", "1"], async (a, b, guest) => {
    const devA = await guest.addDevice({ socketPath: a.socket });
    await devA.start({ queues: [0] });
    await a.line('"step":"mapped"');
    const devB = await guest.addDevice({ socketPath: b.socket });
    await assert.rejects(
      devB.start({ features: 0n, queues: [0] }),
      (e: unknown) => isFrontendError(e) && e.code === "NEGOTIATION" && /1 memory slots: .* need 2, and MEM_READ\/MEM_WRITE is not in use/.test(e.message),
    );
    assert.equal(guest.liveMappings().length, 1, "A's mapping is untouched");
  });
});

test("auto policy: A's mappings are propagated to B while its slots last, the rest reach B by MEM_READ", async () => {
  await withPair(["--extra", "3"], ["--mem-rw", "--max-slots", "3"], async (a, b, guest) => {
    const served: string[] = [];
    const sent: string[] = [];
    const devB: Device = await guest.addDevice({
      socketPath: b.socket,
      sharedMemoryPolicy: "auto",
      memRw: true,
      onBackendRequest: (o) => served.push(`${o.name} ${o.ok}`),
      trace: (e) => e.channel === "frontend" && e.direction === "send" && sent.push(e.name),
    });
    const [qb] = await devB.start({ features: 0n, queues: [0] });
    assert.ok(qb);
    const ramRegions = sent.filter((n) => n === "ADD_MEM_REG").length;
    assert.ok(ramRegions >= 1 && ramRegions < 3, `guest RAM takes ${ramRegions} of B's 3 slots`);
    const devA: Device = await guest.addDevice({ socketPath: a.socket });
    const region = devA.info.shmem.find((r) => r.shmid === 1);
    assert.ok(region);
    await devA.start({ queues: [0] });
    await a.line("extra-mapped");
    await devB.propagationSettled();
    assert.equal(guest.liveMappings().length, 4, "all four of A's maps were admitted");
    const propagated = sent.filter((n) => n === "ADD_MEM_REG").length - ramRegions;
    assert.equal(propagated, 3 - ramRegions, "exactly B's free slots were filled");
    const base = region.guestPhysAddr as bigint;
    // The first mapping (the 64 KiB blob) was propagated: B reaches it directly.
    assert.equal(await blk(guest, qb, 1, base + 0x10000n, 4096), 0);
    assert.equal(served.length, 0, `no MEM_READ for a propagated mapping (${served.join(", ")})`);
    // The last 4 KiB piece did not fit: B reaches it through MEM_READ, with the same bytes.
    assert.equal(await blk(guest, qb, 1, base + 0x100000n + 2n * 0x1000n, 4096), 0);
    assert.ok(served.includes("BACKEND_MEM_READ true"), `MEM_READ served (${served.join(", ")})`);
    const back = guest.allocator.alloc(4096);
    assert.equal(await blk(guest, qb, 0, back, 4096), 0);
    const copy = new Uint8Array(4096);
    await guest.space.read(back, copy);
    assert.deepEqual([...copy.subarray(0, 4)], [0, 1, 2, 3].map(pattern), "B's disk holds the blob's first bytes (fd offset 0)");
    guest.allocator.free(back);
  });
});

test("two devices map at once and B has one free slot: exactly one map is admitted (the admission counts the other)", async () => {
  await withPair([], ["--max-slots", "2"], async (a1, b, guest) => {
    const a2 = await start(dirname(a1.socket), "a2", SHMEM_DEVICE, ["--device", "shmem"]);
    try {
      const devB = await guest.addDevice({ socketPath: b.socket });
      await devB.start({ features: 0n, queues: [0] });
      const devA1 = await guest.addDevice({ socketPath: a1.socket });
      const devA2 = await guest.addDevice({ socketPath: a2.socket });
      await Promise.all([devA1.start({ queues: [0] }), devA2.start({ queues: [0] })]);
      const done = (p: Proc) => Promise.race([p.line('"mapped"'), p.line("map-failed")]);
      await Promise.all([done(a1), done(a2)]);
      const mapped = [a1, a2].filter((p) => p.lines.some((l) => l.includes('"mapped"')));
      assert.equal(mapped.length, 1, `one of the two maps is refused (${[...a1.lines, ...a2.lines].join(" | ")})`);
      await devB.propagationSettled();
      assert.equal(guest.liveMappings().length, 1);
    } finally {
      await stop(a2);
    }
  });
});

test("B starts while A keeps re-mapping: no change is lost while B's memory table is on its way", async () => {
  await withPair(["--churn", "300"], ["--events"], async (a, b, guest) => {
    const devA = await guest.addDevice({ socketPath: a.socket });
    const region = devA.info.shmem.find((r) => r.shmid === 1);
    assert.ok(region);
    await devA.start({ queues: [0] });
    await a.line('"mapped"');
    const devB = await guest.addDevice({ socketPath: b.socket });
    const [qb] = await devB.start({ features: 0n, queues: [0] }); // during A's churn
    assert.ok(qb);
    await a.line("churned");
    await devA.propagationSettled();
    await devB.propagationSettled();
    assert.deepEqual(
      b.lines.filter((l) => l.startsWith("event rejected") && l.includes("MEM_REG")),
      [],
      "no stale or duplicate entry in B's table",
    );
    assert.equal(await blk(guest, qb, 1, (region.guestPhysAddr as bigint) + 0x10000n, 4096), 0, "B reaches the last mapping directly");
  });
});

test("A unmaps and re-maps the same range faster than B acks: B's table follows in order (no REM of a reused entry)", async () => {
  await withPair(["--churn", "100"], ["--events"], async (a, b, guest) => {
    const devB = await guest.addDevice({ socketPath: b.socket });
    const [qb] = await devB.start({ features: 0n, queues: [0] });
    assert.ok(qb);
    const devA = await guest.addDevice({ socketPath: a.socket });
    const region = devA.info.shmem.find((r) => r.shmid === 1);
    assert.ok(region);
    await devA.start({ queues: [0] });
    await a.line("churned");
    await devA.propagationSettled();
    await devB.propagationSettled();
    assert.deepEqual(
      b.lines.filter((l) => l.startsWith("event rejected") && l.includes("MEM_REG")),
      [],
      "B refused none of the ADD_MEM_REG / REM_MEM_REG it got",
    );
    assert.equal(devA.failed, undefined, "A (which also gets its own mapping propagated) is fine");
    assert.equal(devB.failed, undefined);
    // The last map is live in B's table: B reaches the blob directly.
    const blob = (region.guestPhysAddr as bigint) + 0x10000n;
    assert.equal(await blk(guest, qb, 1, blob, 4096), 0, "B wrote from A's (re-)mapped blob");
  });
});

describe("a read-only mapping of A is never propagated to B (a memory-table entry cannot be read-only)", () => {
  test("B without MEM_READ/MEM_WRITE cannot reach it: A's SHMEM_MAP is refused with the reason", async () => {
    await withPair(["--read-only"], [], async (a, b, guest) => {
      assert.match(await refusedMap(a, b, guest), /read-only mapping is never propagated/);
    });
  });

  test("B with MEM_READ/MEM_WRITE reads it (no ADD_MEM_REG of it) and cannot write it", async () => {
    await withPair(["--read-only"], ["--mem-rw"], async (a, b, guest) => {
      const served: string[] = [];
      const sent: string[] = [];
      const replies: string[] = [];
      const devB = await guest.addDevice({
        socketPath: b.socket,
        memRw: true,
        onBackendRequest: (o) => served.push(`${o.name} ${o.ok}`),
        trace: (t) => {
          if (t.channel === "frontend" && t.direction === "send") sent.push(t.name);
          if (t.channel === "backend" && t.direction === "send") replies.push(`${t.name} ${t.size} ${t.fds}`);
        },
      });
      // Revision 2 (docs/shmem.md#shared-data-buffer-revision-2) negotiated with the RAM blk example: bit 62 below the gate.
      assert.equal(devB.info.ackedProtocolFeatures & (3n << 62n), 3n << 62n);
      const [qb] = await devB.start({ features: 0n, queues: [0] });
      assert.ok(qb);
      const devA = await guest.addDevice({ socketPath: a.socket });
      const region = devA.info.shmem.find((r) => r.shmid === 1);
      assert.ok(region);
      sent.length = 0;
      await devA.start({ queues: [0] });
      await a.line("mapped");
      await devB.propagationSettled();
      assert.deepEqual(
        sent.filter((n) => n.endsWith("MEM_REG") || n === "SET_MEM_TABLE"),
        [],
        "B's memory table was left alone",
      );
      const blob = (region.guestPhysAddr as bigint) + 0x10000n;
      assert.equal(await blk(guest, qb, 1, blob, 4096), 0, "B wrote the read-only blob to its disk (MEM_READ)");
      assert.ok(served.includes("BACKEND_MEM_READ true"));
      // The data came through the shared buffer: 16-byte replies, the first one carrying the buffer.
      assert.equal(replies[0], "BACKEND_MEM_READ 16 1", replies.join(", "));
      assert.ok(
        replies.every((r) => r.startsWith("BACKEND_MEM_READ 16 ")),
        replies.join(", "),
      );
      assert.equal(await blk(guest, qb, 0, blob, 4096), 1, "B reading its disk into the read-only blob fails with IOERR");
      assert.ok(served.includes("BACKEND_MEM_WRITE false"), "the front-end refused the MEM_WRITE");
      const got = new Uint8Array(4);
      await guest.space.read(guestAddress(blob), got);
      assert.deepEqual([...got], [0, 1, 2, 3].map(pattern), "the blob is unchanged");
    });
  });
});

describe("a buffer in device A's shared memory region, used by device B", () => {
  for (const variant of ["propagate", "mem-rw", "auto", "propagate by SET_MEM_TABLE"] as const) {
    const mode: Mode = variant === "propagate by SET_MEM_TABLE" ? "propagate" : variant;
    test(`${variant}: B writes A's blob to its disk and reads it back byte for byte; after A's unmap B gets IOERR`, async () => {
      const bArgs = mode === "propagate" ? [] : mode === "mem-rw" ? ["--mem-rw"] : ["--mem-rw", "--max-slots", "1"];
      await withPair([], bArgs, async (a, b, guest) => {
        const served: string[] = [];
        // Without CONFIGURE_MEM_SLOTS, B's table (RAM, then RAM + A's mapping) goes as whole SET_MEM_TABLEs.
        const withoutSlots = variant === "propagate by SET_MEM_TABLE";
        const sent: string[] = [];
        const devB: Device = await guest.addDevice({
          socketPath: b.socket,
          sharedMemoryPolicy: mode,
          memRw: mode !== "propagate",
          onBackendRequest: (o) => served.push(`${o.name} ${o.ok}`),
          ...(withoutSlots
            ? {
                protocolFeatures: SUPPORTED_PROTOCOL_FEATURES & ~ProtocolFeature.CONFIGURE_MEM_SLOTS,
                trace: (e) => e.channel === "frontend" && e.direction === "send" && sent.push(e.name),
              }
            : {}),
        });
        const [qb] = await devB.start({ features: 0n, queues: [0] });
        assert.ok(qb);
        const devA: Device = await guest.addDevice({ socketPath: a.socket });
        const region = devA.info.shmem.find((r) => r.shmid === 1);
        assert.ok(region, "A declared shmid 1");
        await devA.start({ queues: [0] });
        await a.line("mapped");
        await devB.propagationSettled();
        const blob = (region.guestPhysAddr as bigint) + 0x10000n;
        const got = new Uint8Array(4096);
        await guest.space.read(guestAddress(blob), got);
        assert.deepEqual([...got.subarray(0, 4)], [0, 1, 2, 3].map(pattern), "the front-end sees A's blob in the region");

        assert.equal(await blk(guest, qb, 1, blob, 4096), 0, "B wrote from A's region");
        const back = guest.allocator.alloc(4096);
        assert.equal(await blk(guest, qb, 0, back, 4096), 0, "B read back into RAM");
        const copy = new Uint8Array(4096);
        await guest.space.read(back, copy);
        assert.deepEqual(copy, got, "B's disk holds A's bytes");
        guest.allocator.free(back);
        if (withoutSlots) {
          assert.equal(sent.filter((n) => n === "ADD_MEM_REG").length, 0, "no ADD_MEM_REG without CONFIGURE_MEM_SLOTS");
          assert.ok(sent.filter((n) => n === "SET_MEM_TABLE").length >= 2, `the RAM table, then RAM + A's mapping (${sent.join(", ")})`);
        }
        if (mode === "propagate") assert.deepEqual(served, [], "B reached A's mapping directly (propagated), no MEM_READ");
        else assert.ok(served.includes("BACKEND_MEM_READ true"), `B read A's blob through MEM_READ (${served.join(", ")})`);
        served.length = 0;

        // A goes away: its mappings are dropped (and removed from B's table when propagated).
        await devA.close();
        await devB.propagationSettled();
        assert.equal(await blk(guest, qb, 1, blob, 4096), 1, "B's access to the stale range fails with IOERR, nothing crashes");
        if (mode !== "propagate") assert.ok(served.includes("BACKEND_MEM_READ false"), "the front-end refused the stale MEM_READ");
        assert.equal(b.child.exitCode, null, "device B is still running");
      });
    });
  }
});

test("A's back-end killed with a reconnect policy: its mapping leaves B's table at once (REM_MEM_REG); the restarted A maps again and B reaches it again", async () => {
  await withPair([], [], async (a, b, guest) => {
    const sentToB: string[] = [];
    let removed!: () => void;
    const removal = new Promise<void>((r) => (removed = r));
    const devB = await guest.addDevice({
      socketPath: b.socket,
      trace: (e) => e.channel === "frontend" && e.direction === "send" && (sentToB.push(e.name), e.name === "REM_MEM_REG" && removed()),
    });
    const [qb] = await devB.start({ features: 0n, queues: [0] });
    assert.ok(qb);
    const devA = await guest.addDevice({ socketPath: a.socket, reconnect: { initialDelayMs: 10, maxDelayMs: 100, attempts: 300 } });
    const reconnected = new Promise<void>((r) => devA.onReconnect(() => r()));
    const region = devA.info.shmem.find((r) => r.shmid === 1);
    assert.ok(region);
    await devA.start({ queues: [0] });
    await a.line('"mapped"');
    await devB.propagationSettled();
    const blob = (region.guestPhysAddr as bigint) + 0x10000n;
    assert.equal(await blk(guest, qb, 1, blob, 4096), 0, "B reaches A's blob");
    a.child.kill("SIGKILL");
    await removal;
    assert.equal(guest.liveMappings().length, 0, "the lost back-end's mapping is gone");
    const again = await start(dirname(a.socket), "a", SHMEM_DEVICE, ["--device", "shmem"]);
    try {
      await reconnected;
      await again.line('"mapped"');
      await devB.propagationSettled();
      assert.equal(devA.failed, undefined);
      assert.equal(devA.info.shmem.find((r) => r.shmid === 1)?.guestPhysAddr, region.guestPhysAddr, "the region kept its place");
      assert.equal(sentToB.filter((n) => n === "ADD_MEM_REG").length - sentToB.filter((n) => n === "REM_MEM_REG").length >= 2, true, sentToB.join());
      assert.equal(await blk(guest, qb, 1, blob, 4096), 0, "B reaches the new mapping");
    } finally {
      await stop(again);
    }
  });
});
