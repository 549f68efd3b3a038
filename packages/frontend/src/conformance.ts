/**
 * Conformance checks against a live back-end (`vhost-user-device check`).
 * @module
 */
import { Dialects, ProtocolFeature, UPSTREAM, VirtioFeature, type Dialect, type MemoryRegion } from "@vhostkit/wire";
import { GuestRam, SYNTHETIC_USER_BASE, guestAddress } from "@vhostkit/regions";
import { EventFd, OwnedFd } from "@vhostkit/transport";
import { dupCloexec } from "@vhostkit/transport/sys";
import type { CheckResult } from "./check-result.js";
import { DeviceStatus, resetRoundTrip, shmemChannelCheck, statusRoundTrip } from "./conformance-lifecycle.js";
import { SUPPORTED_PROTOCOL_FEATURES, type DeviceOptions } from "./device-options.js";
import type { Device } from "./device.js";
import type { DriverQueue } from "./driver-queue.js";
import { BlkDriver } from "./drivers/blk.js";
import { RngDriver } from "./drivers/rng.js";
import { isFrontendError } from "./errors.js";
import { Guest } from "./guest.js";

/** Device types the conformance run knows how to exercise. */
export type ConformanceDeviceType = "generic" | "blk" | "rng";

export type { CheckResult } from "./check-result.js";

/** Options of {@link runConformance}: the back-end (`socketPath`, as the CLI gives it, or a connected `endpoint`) and device options. */
export interface ConformanceOptions extends DeviceOptions {
  /** Which driver to exercise the ring with (default `"generic"`: no device requests). */
  readonly deviceType?: ConformanceDeviceType;
}

const hex = (v: bigint | number): string => `0x${v.toString(16)}`;

/** How long a stopped ring is watched for a chain it must not use (ms). */
const STOPPED_RING_WAIT_MS = 100;

async function readU16(guest: Guest, addr: bigint): Promise<number> {
  const b = new Uint8Array(2);
  await guest.space.read(guestAddress(addr), b);
  return b[0]! | (b[1]! << 8);
}

async function writeU16(guest: Guest, addr: bigint, v: number): Promise<void> {
  await guest.space.write(guestAddress(addr), new Uint8Array([v & 0xff, v >> 8]));
}

/**
 * Makes one more chain available on the stopped ring `q` (without telling the driver queue) and
 * returns a reader of the word the device would change by using it: split — `used.idx` (the avail
 * index goes up by one); packed — the flags of the descriptor at the avail position (marked
 * available for this lap; using it would mark it used). docs/virtqueue.md#packed-rings.
 */
async function makeOneMoreAvailable(guest: Guest, q: DriverQueue): Promise<() => Promise<number>> {
  const { desc, avail, used } = q.rings;
  const position = q.availIndex;
  if (!q.packed) {
    await writeU16(guest, avail + 2n, (position + 1) & 0xffff);
    return () => readU16(guest, used + 2n);
  }
  const d = desc + 16n * BigInt(position & 0x7fff);
  const entry = new Uint8Array(16);
  const v = new DataView(entry.buffer);
  v.setUint32(8, 1, true); // len 1 at guest address 0, buffer ID 0
  v.setUint16(14, (position & 0x8000) !== 0 ? 0x80 : 0x8000, true); // AVAIL = wrap counter, USED = its inverse
  await guest.space.write(guestAddress(d), entry);
  return () => readU16(guest, d + 14n);
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Runs the conformance checks in order on one connection: handshake order
 * (docs/protocol.md#negotiation-order), feature offer, queue count, the status byte before and
 * with the rings running (docs/protocol.md#device-status; STATUS is asked for), REPLY_ACK behaviour
 * (docs/protocol.md#reply-rules: an ack per NEED_REPLY, and exactly one reply per request), config
 * size handling (docs/protocol.md#device-config-space), shmem config sanity
 * (docs/shmem.md#region-query, docs/shmem.md#distrust-the-region-query), the ring running (device
 * type permitting), GET_VRING_BASE stopping the ring (docs/protocol.md#starting-and-stopping-rings),
 * a memory table update (docs/protocol.md#memory-table), RESET_DEVICE (docs/protocol.md#reset), the
 * back-end channel the shared memory regions need, and tear-down. Never throws for back-end
 * behaviour: every problem is a failed check.
 * @returns the checks in the order run.
 */
export async function runConformance(options: ConformanceOptions): Promise<CheckResult[]> {
  const out: CheckResult[] = [];
  const pass = (name: string, reason: string): void => void out.push({ name, status: "pass", reason });
  const fail = (name: string, reason: string): void => void out.push({ name, status: "fail", reason });
  const skip = (name: string, reason: string): void => void out.push({ name, status: "skip", reason });
  const guest = new Guest();
  let device: Device | undefined;
  // STATUS too, so that the status byte can be checked (docs/protocol.md#device-status).
  const dialect: Dialect = typeof options.dialect === "string" ? (Dialects[options.dialect] ?? UPSTREAM) : (options.dialect ?? UPSTREAM);
  const protocolFeatures = (options.protocolFeatures ?? SUPPORTED_PROTOCOL_FEATURES | dialect.shmemFeature) | ProtocolFeature.STATUS;
  try {
    try {
      device = await guest.addDevice({ ...options, protocolFeatures });
    } catch (err) {
      // A GET_SHMEM_CONFIG reply the front-end refuses (docs/shmem.md#distrust-the-region-query) ends the handshake too.
      if (isFrontendError(err) && err.code === "BAD_SHMEM_CONFIG") {
        pass("handshake order", "accepted up to GET_SHMEM_CONFIG");
        fail("shmem config sanity", message(err));
      } else fail("handshake order", message(err));
      return out;
    }
    const info = device.info;
    const fe = device.connection;
    const acked = info.ackedProtocolFeatures;
    pass(
      "handshake order",
      "GET_FEATURES, GET/SET_PROTOCOL_FEATURES, GET_QUEUE_NUM, GET_MAX_MEM_SLOTS, SET_BACKEND_REQ_FD, SET_OWNER, GET_CONFIG, GET_SHMEM_CONFIG accepted (those negotiated)",
    );
    const missing = (info.features & VirtioFeature.PROTOCOL_FEATURES) === 0n ? " (no PROTOCOL_FEATURES: rings start enabled)" : "";
    pass("features", `offers ${hex(info.features)} with VERSION_1${missing}`);
    pass("protocol features", `offered ${hex(info.protocolFeatures)}, acknowledged ${hex(acked)}`);
    if (info.queueNum >= 1) pass("queue count", `${info.queueNum} queue(s)${(acked & ProtocolFeature.MQ) === 0n ? " (MQ not offered: assumed 1)" : ""}`);
    else fail("queue count", `${info.queueNum} queues`);
    out.push(await statusRoundTrip(fe, info, DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER, "before the rings"));

    if ((acked & ProtocolFeature.REPLY_ACK) !== 0n) {
      // SET_OWNER (and SET_BACKEND_REQ_FD) went out with NEED_REPLY during the handshake; a
      // missing, extra or non-zero ack would have failed it. One more ack-rule request here shows
      // the exchange is still in step: a stray second ack would be read as this request's reply.
      try {
        await fe.setVringNum(0, 64);
        await fe.getFeatures();
        pass("REPLY_ACK behaviour", "every request with NEED_REPLY got exactly one u64 status 0; the exchange stays in step");
      } catch (err) {
        fail("REPLY_ACK behaviour", message(err));
      }
    } else {
      skip("REPLY_ACK behaviour", "REPLY_ACK not offered");
    }

    if ((acked & ProtocolFeature.CONFIG) !== 0n) {
      const c = info.config;
      if (c === undefined) {
        fail("config size handling", "every GET_CONFIG size was refused");
      } else {
        try {
          const again = await fe.getConfig(0, c.byteLength);
          // A read past the end is refused with a zero-size reply (libvhost-user) or a short one (rust-vmm).
          const bigger = c.byteLength < 256 ? await fe.getConfig(0, c.byteLength + 1, { shortIsRefusal: true }) : undefined;
          await fe.getFeatures();
          const same = again?.every((b, i) => b === c[i]);
          if (!same) fail("config size handling", `GET_CONFIG of ${c.byteLength} bytes did not return the same bytes twice`);
          else
            pass(
              "config size handling",
              `${c.byteLength}-byte config; ${c.byteLength + 1} bytes ${bigger === undefined ? "refused (a zero-size or short reply)" : "answered with the requested size"}; connection intact`,
            );
        } catch (err) {
          fail("config size handling", message(err));
        }
      }
    } else {
      skip("config size handling", "CONFIG not offered");
    }

    if ((acked & info.dialect.shmemFeature) !== 0n) {
      const regions = info.shmem.map((r) => `shmid ${r.shmid}: ${hex(r.size)}`).join(", ");
      pass("shmem config sanity", info.shmem.length === 0 ? "no regions" : `${info.shmem.length} region(s), page multiples: ${regions}`);
    } else {
      skip("shmem config sanity", `SHMEM (${info.dialect.name} dialect, ${hex(info.dialect.shmemFeature)}) not offered`);
    }
    out.push(shmemChannelCheck(info));

    const type = options.deviceType ?? "generic";
    let started = false;
    try {
      if (type === "blk") {
        const blk = await BlkDriver.attach(device);
        started = true;
        const id = await blk.getId();
        pass("ring runs", `virtio-blk GET_ID completed: "${id}"`);
      } else if (type === "rng") {
        const rng = await RngDriver.attach(device);
        started = true;
        const b = await rng.read(16);
        pass("ring runs", `virtio-rng returned ${b.byteLength} bytes`);
      } else {
        await device.start();
        started = true;
        skip("ring runs", "generic device: no requests sent (use --device-type)");
      }
    } catch (err) {
      fail("ring runs", message(err));
    }
    if (started && device.failed === undefined) {
      out.push(
        await statusRoundTrip(
          fe,
          info,
          DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER | DeviceStatus.FEATURES_OK | DeviceStatus.DRIVER_OK,
          "with the rings running",
        ),
      );
    } else skip("status with the rings running", "ring not started");

    if (started && device.failed === undefined) {
      // A copy of the kick eventfd outlives the queue: after the stop, one more chain is made
      // available and kicked; a stopped ring must not use it.
      const q = device.queue(0);
      const kick = new EventFd(new OwnedFd(dupCloexec(q.kickFd)));
      try {
        // Split: the next avail index. Packed: avail and used positions with wrap counters, equal
        // once every request completed (docs/protocol.md#vring-set-up-messages).
        const expected = q.vringBase;
        const what = q.packed ? "packed ring base" : "next avail index";
        const bases = await device.stop();
        const base = bases.get(0);
        if (base !== expected)
          fail("GET_VRING_BASE stops the ring", `returned ${base === undefined ? "nothing" : hex(base)}, expected ${what} ${hex(expected)}`);
        else {
          const watch = await makeOneMoreAvailable(guest, q);
          const before = await watch();
          kick.signal();
          await new Promise((r) => setTimeout(r, STOPPED_RING_WAIT_MS));
          const after = await watch();
          const word = q.packed ? "descriptor flags" : "used index";
          if (after !== before)
            fail(
              "GET_VRING_BASE stops the ring",
              `returned ${hex(base)}, but a chain made available and kicked after it was used (${word} ${hex(before)} -> ${hex(after)})`,
            );
          else
            pass(
              "GET_VRING_BASE stops the ring",
              `returned ${what} ${hex(base)}, where the driver stands; a chain kicked after it stayed unused for ${STOPPED_RING_WAIT_MS} ms`,
            );
        }
      } catch (err) {
        fail("GET_VRING_BASE stops the ring", message(err));
      } finally {
        kick.close();
      }
    } else {
      skip("GET_VRING_BASE stops the ring", "ring not started");
    }

    if (started && device.failed === undefined) {
      try {
        // A second, temporary RAM block above the guest's RAM: added, then removed again, so the
        // table the rings live in is never touched (docs/protocol.md#memory-table; QEMU does REM before ADD).
        const ram = guest.ramRegions();
        const top = ram.regions.reduce((m, r) => (r.guestPhysAddr + r.memorySize > m ? r.guestPhysAddr + r.memorySize : m), 0n);
        const size = 1n << 20n;
        using extra = new GuestRam({ blocks: [{ guestPhysAddr: top, size }], name: "vhostkit-check" });
        const x = extra.memoryTable()[0] as { fd: number };
        const region: MemoryRegion = { guestPhysAddr: top, memorySize: size, userAddr: SYNTHETIC_USER_BASE + top, mmapOffset: 0n };
        if ((acked & ProtocolFeature.CONFIGURE_MEM_SLOTS) !== 0n) {
          await fe.addMemReg(region, x.fd);
          await fe.remMemReg(region);
        } else {
          await fe.setMemTable([...ram.regions, region], [...ram.fds, x.fd]);
          await fe.setMemTable(ram.regions, ram.fds);
        }
        await fe.getFeatures();
        pass(
          "memory table update",
          (acked & ProtocolFeature.CONFIGURE_MEM_SLOTS) !== 0n
            ? "ADD_MEM_REG then REM_MEM_REG of a second region acknowledged"
            : "SET_MEM_TABLE with a second region, then without it, acknowledged",
        );
      } catch (err) {
        fail("memory table update", message(err));
      }
    } else {
      skip("memory table update", "device not started");
    }
    if (device.failed === undefined) out.push(await resetRoundTrip(fe, info));
    else skip("RESET_DEVICE", "connection lost");
  } finally {
    try {
      if (device !== undefined) {
        // The connection must still answer before tear-down (a check above may have lost it).
        const alive =
          device.failed === undefined
            ? await device.connection.getFeatures().then(
                () => undefined,
                (e: unknown) => message(e),
              )
            : device.failed.message;
        await device.close();
        if (alive === undefined && device.failed === undefined) pass("tear-down", "connection intact; GET_VRING_BASE / reset / close done");
        else fail("tear-down", `connection lost before tear-down: ${alive ?? device.failed?.message ?? ""}`);
      }
    } catch (err) {
      fail("tear-down", isFrontendError(err) ? err.message : message(err));
    }
    await guest.close();
  }
  return out;
}
