/**
 * Steps 1–4 of a device's set-up (docs/protocol.md#negotiation-order): features, protocol features, queue count,
 * memory slots, the back-end channel (SET_BACKEND_REQ_FD), SET_OWNER, GET_CONFIG, and
 * GET_SHMEM_CONFIG with the device's VIRTIO Shared Memory Regions placed in guest-physical space.
 * @module
 */
import {
  Dialects,
  isWireError,
  MEM_RW_MAX_PAYLOAD,
  ProtocolFeature,
  UPSTREAM,
  VirtioFeature,
  vhostkitMemRwFeature,
  vhostkitMemRwBufferFeature,
  type Dialect,
  type DialectName,
} from "@vhostkit/wire";
import { Endpoint, socketPair } from "@vhostkit/transport";
import { DeviceSharedMemory, isRegionError, type GuestAddress, type GuestAddressSpace, type ShmemRegionInfo } from "@vhostkit/regions";
import { DEFAULT_MAX_SHMEM_BYTES, SUPPORTED_PROTOCOL_FEATURES, type DeviceOptions } from "./device-options.js";
import { FrontendError, isFrontendError } from "./errors.js";
import type { Frontend } from "./frontend.js";

/** What a back-end advertised during negotiation (what `vhost-user-device probe` prints). */
export interface DeviceInfo {
  /** GET_FEATURES: offered virtio feature bits (u64). */
  readonly features: bigint;
  /** GET_PROTOCOL_FEATURES: offered protocol features (u64; 0 without VHOST_USER_F_PROTOCOL_FEATURES). */
  readonly protocolFeatures: bigint;
  /** The protocol features acknowledged with SET_PROTOCOL_FEATURES. */
  readonly ackedProtocolFeatures: bigint;
  /** GET_QUEUE_NUM (1 when MQ is not offered). */
  readonly queueNum: number;
  /** GET_MAX_MEM_SLOTS, or `undefined` without CONFIGURE_MEM_SLOTS. */
  readonly maxMemSlots: number | undefined;
  /** Device config space read with GET_CONFIG (little-endian bytes), or `undefined` without CONFIG or when refused. */
  readonly config: Uint8Array | undefined;
  /** VIRTIO Shared Memory Regions (non-zero sizes from GET_SHMEM_CONFIG), with their guest-physical placement. */
  readonly shmem: readonly ShmemRegionInfo[];
  /** The dialect used on this connection. */
  readonly dialect: Dialect;
}

/** What negotiation leaves behind, all owned by the caller from then on. @internal */
export interface Negotiated {
  /** What the back-end advertised and what was acknowledged. */
  readonly info: DeviceInfo;
  /** This front-end's end of the back-end channel (BACKEND_REQ negotiated), not served yet. */
  readonly channel: Endpoint | undefined;
  /** The device's shared memory regions, already part of the guest's address space. */
  readonly regions: DeviceSharedMemory | undefined;
  /** vhostkit MEM_READ/MEM_WRITE was negotiated. */
  readonly memRw: boolean;
  /** Its revision 2, the shared data buffer, too (docs/shmem.md#shared-data-buffer-revision-2). */
  readonly memRwBuffer: boolean;
}

/**
 * What a device had negotiated with the back-end it lost, for {@link negotiate} with a restarted
 * one: the same protocol features must be offered again, and the same shared memory regions, which
 * stay where they are in guest-physical space.
 * @internal
 */
export interface Renegotiation {
  /** The protocol features acknowledged with the lost back-end: asked for again, all of them. */
  readonly ackedProtocolFeatures: bigint;
  /** The device's regions, kept (`undefined`: it had none). */
  readonly regions: DeviceSharedMemory | undefined;
}

/** Where a device's shared memory goes in the guest. @internal */
export interface ShmemPlacement {
  /** The guest-physical space the regions join. */
  readonly space: GuestAddressSpace;
  /** Reserves guest-physical space for a window of `size` bytes. */
  placeShmem(size: bigint): GuestAddress;
}

/**
 * `options.dialect` as a {@link Dialect}.
 * @throws FrontendError `BAD_ARGUMENT` for an unknown dialect name.
 * @internal
 */
export function resolveDialect(d: Dialect | DialectName | undefined): Dialect {
  if (d === undefined) return UPSTREAM;
  if (typeof d === "string") {
    const found = Dialects[d];
    if (found === undefined) throw new FrontendError("BAD_ARGUMENT", `unknown dialect ${String(d)}`, { actual: String(d) });
    return found;
  }
  return d;
}

/** True when every bit of a non-zero `mask` is set in `bits`. @internal */
export function hasFeatures(bits: bigint, mask: bigint): boolean {
  return (bits & mask) === mask && mask !== 0n;
}

/** The vhostkit MEM_RW gate mask the options ask for (0n when off; the `"mem-rw"` policy implies it). @internal */
export function memRwMask(options: DeviceOptions): bigint {
  const o = options.memRw ?? (options.sharedMemoryPolicy === "mem-rw" ? true : undefined);
  return o === undefined || o === false ? 0n : vhostkitMemRwFeature(o === true ? undefined : o.bit);
}

/** The gate mask plus its shared-buffer bit (docs/shmem.md#shared-data-buffer-revision-2); 0n when off. */
function memRwMasks(options: DeviceOptions): bigint {
  const o = options.memRw ?? (options.sharedMemoryPolicy === "mem-rw" ? true : undefined);
  if (o === undefined || o === false) return 0n;
  const bit = o === true ? undefined : o.bit;
  return vhostkitMemRwFeature(bit) | vhostkitMemRwBufferFeature(bit);
}

/**
 * Sizes by shmid (non-zero only) from a GET_SHMEM_CONFIG or crosvm GET_SHARED_MEMORY_REGIONS reply
 * (docs/shmem.md#region-query, docs/shmem.md#distrust-the-region-query). The wire codec has
 * already checked nregions (≤ 256, equal to the count of non-zero sizes); {@link DeviceSharedMemory} checks ids and page multiples. Here: no shmid listed
 * twice (crosvm lists ids) and a bounded total, so a hostile reply cannot reserve the address space.
 * @throws FrontendError `BAD_SHMEM_CONFIG`.
 */
function shmemSizes(
  raw: { readonly sizes: readonly bigint[] } | { readonly regions: readonly { readonly id: number; readonly length: bigint }[] },
  maxTotal: bigint,
): { readonly sizes: Map<number, bigint>; readonly total: bigint } {
  const entries: [number, bigint][] = "sizes" in raw ? raw.sizes.map((s, i) => [i, s]) : raw.regions.map((r) => [r.id, r.length]);
  const out = new Map<number, bigint>();
  let total = 0n;
  for (const [id, size] of entries) {
    if (size === 0n) continue;
    if (out.has(id)) throw new FrontendError("BAD_SHMEM_CONFIG", `shmid ${id} listed twice`, { request: "GET_SHMEM_CONFIG", actual: id });
    out.set(id, size);
    total += size;
  }
  if (total > maxTotal)
    throw new FrontendError("BAD_SHMEM_CONFIG", `shared memory of 0x${total.toString(16)} bytes exceeds the cap 0x${maxTotal.toString(16)}`, {
      request: "GET_SHMEM_CONFIG",
      expected: maxTotal,
      actual: total,
    });
  return { sizes: out, total };
}

/**
 * GET_SHMEM_CONFIG of a restarted back-end: the sizes of `regions` again, or nothing.
 * @throws FrontendError `FEATURES_WITHDRAWN` when they changed, `BAD_SHMEM_CONFIG` for an untrustworthy reply.
 */
async function sameRegions(fe: Frontend, regions: DeviceSharedMemory | undefined, options: DeviceOptions): Promise<void> {
  const { sizes } = shmemSizes(await fe.getShmemConfigRaw(), options.maxShmemBytes ?? DEFAULT_MAX_SHMEM_BYTES);
  const had = new Map((regions?.regions() ?? []).map((r) => [r.shmid, r.size]));
  const same = sizes.size === had.size && [...sizes].every(([id, size]) => had.get(id) === size);
  if (!same) throw new FrontendError("FEATURES_WITHDRAWN", "the restarted back-end changed its shared memory regions", { request: "GET_SHMEM_CONFIG" });
}

/**
 * Finds the largest GET_CONFIG size (1–256) the back-end accepts: 256 first, then a binary search.
 * A zero-size reply (libvhost-user) and a reply with fewer bytes than asked (rust-vmm back-ends,
 * which answer a read past the end of their config with no data) both mean "too large"
 * (docs/protocol.md#device-config-space).
 * @returns the config bytes, or `undefined` when every size is refused.
 */
async function discoverConfig(fe: Frontend): Promise<Uint8Array | undefined> {
  const probe = { shortIsRefusal: true } as const;
  const full = await fe.getConfig(0, 256, probe);
  if (full !== undefined) return full;
  let lo = 0;
  let hi = 256;
  let best: Uint8Array | undefined;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    const r = await fe.getConfig(0, mid, probe);
    if (r !== undefined) {
      lo = mid;
      best = r;
    } else {
      hi = mid;
    }
  }
  return best;
}

/**
 * Negotiates with the back-end on `fe`, steps 1–4 in the order above. Nothing it
 * created stays open or placed when it throws (the connection itself is the caller's). With
 * `previous` (a restarted back-end) the protocol features acknowledged before are asked for again
 * and must all be offered, and the shared memory regions must have the same sizes: `previous.regions`
 * is returned, not a new placement.
 * @throws FrontendError `NEGOTIATION`, `PROTOCOL`, `REFUSED`, `BAD_SHMEM_CONFIG`, `BAD_ARGUMENT`,
 *   `DISCONNECTED`, `TIMEOUT`; `FEATURES_WITHDRAWN` (with `previous`).
 * @internal
 */
export async function negotiate(fe: Frontend, options: DeviceOptions, dialect: Dialect, guest: ShmemPlacement, previous?: Renegotiation): Promise<Negotiated> {
  const memRwBit = memRwMask(options);
  const memRwBits = memRwMasks(options);
  // 1. GET_FEATURES; VERSION_1 is required.
  const features = await fe.getFeatures();
  if (!hasFeatures(features, VirtioFeature.VERSION_1))
    throw new FrontendError("NEGOTIATION", `back-end does not offer VIRTIO_F_VERSION_1 (features 0x${features.toString(16)})`, {
      request: "GET_FEATURES",
      actual: features,
    });
  // 2. Protocol features (legal before SET_FEATURES once bit 30 is offered).
  let protocolFeatures = 0n;
  let acked = 0n;
  if (hasFeatures(features, VirtioFeature.PROTOCOL_FEATURES)) {
    protocolFeatures = await fe.getProtocolFeatures();
    const inflight = options.reconnect === undefined ? 0n : ProtocolFeature.INFLIGHT_SHMFD;
    const log = options.dirtyLog === true ? ProtocolFeature.LOG_SHMFD : 0n;
    const wanted =
      previous?.ackedProtocolFeatures ?? (options.protocolFeatures ?? SUPPORTED_PROTOCOL_FEATURES | dialect.shmemFeature | inflight | log) | memRwBits;
    acked = protocolFeatures & wanted;
    if (previous !== undefined && acked !== wanted) {
      throw new FrontendError("FEATURES_WITHDRAWN", `the restarted back-end no longer offers protocol features 0x${(wanted & ~acked).toString(16)}`, {
        request: "GET_PROTOCOL_FEATURES",
        expected: wanted,
        actual: protocolFeatures,
      });
    }
    // The extension travels on the back-end channel: never without BACKEND_REQ (docs/shmem.md#extension-negotiation).
    if (!hasFeatures(acked, ProtocolFeature.BACKEND_REQ)) acked &= ~memRwBits;
    // Revision 2 only on top of the gate.
    if (!hasFeatures(acked, memRwBit)) acked &= ~memRwBits;
    await fe.setProtocolFeatures(acked);
    fe.replyAck = hasFeatures(acked, ProtocolFeature.REPLY_ACK);
  }
  const memRw = hasFeatures(acked, memRwBit);
  const memRwBuffer = memRw && hasFeatures(acked, memRwBits & ~memRwBit);
  // 3. Queue count, memory slots, back-end channel.
  let queueNum = 1;
  if (hasFeatures(acked, ProtocolFeature.MQ)) {
    const n = await fe.getQueueNum();
    if (n < 1n || n > 0xffffn) throw new FrontendError("PROTOCOL", `get_queue_num: ${n} queues`, { request: "GET_QUEUE_NUM", actual: n });
    queueNum = Number(n);
  }
  let maxMemSlots: number | undefined;
  if (hasFeatures(acked, ProtocolFeature.CONFIGURE_MEM_SLOTS)) {
    const n = await fe.getMaxMemSlots();
    if (n > 0xffff_ffffn) throw new FrontendError("PROTOCOL", `get_max_mem_slots: ${n}`, { request: "GET_MAX_MEM_SLOTS", actual: n });
    maxMemSlots = Number(n);
  }
  let channel: Endpoint | undefined;
  if (hasFeatures(acked, ProtocolFeature.BACKEND_REQ)) {
    const [mine, theirs] = socketPair();
    try {
      // MEM_READ/MEM_WRITE may carry up to 16 + 64 KiB; anything larger is a framing error.
      channel = new Endpoint(mine, memRw ? { maxPayload: MEM_RW_MAX_PAYLOAD } : {});
      await fe.setBackendReqFd(theirs.fd);
    } catch (err) {
      channel?.close();
      throw err;
    } finally {
      theirs.close(); // docs/protocol.md#back-end-channel: the front-end closes its copy of the sent end.
    }
  }
  let regions: DeviceSharedMemory | undefined;
  try {
    // 4. SET_OWNER, GET_CONFIG, GET_SHMEM_CONFIG.
    await fe.setOwner();
    let config: Uint8Array | undefined;
    if (hasFeatures(acked, ProtocolFeature.CONFIG)) {
      const size = options.configSize;
      if (size !== undefined && (!Number.isInteger(size) || size < 1 || size > 256))
        throw new FrontendError("BAD_ARGUMENT", `config size ${size} not in 1..256`, { actual: size });
      config = size === undefined ? await discoverConfig(fe) : await fe.getConfig(0, size);
    }
    if (previous !== undefined) {
      if (hasFeatures(acked, dialect.shmemFeature)) await sameRegions(fe, previous.regions, options);
      regions = previous.regions;
    } else if (hasFeatures(acked, dialect.shmemFeature)) {
      let raw;
      try {
        raw = await fe.getShmemConfigRaw();
      } catch (err) {
        // A reply the wire codec rejects (nregions > 256, nregions not matching the sizes).
        if (isFrontendError(err) && err.code === "PROTOCOL" && isWireError(err.cause))
          throw new FrontendError("BAD_SHMEM_CONFIG", err.message, err.detail, { cause: err.cause });
        throw err;
      }
      const { sizes, total } = shmemSizes(raw, options.maxShmemBytes ?? DEFAULT_MAX_SHMEM_BYTES);
      if (sizes.size > 0) {
        try {
          regions = new DeviceSharedMemory({
            sizes,
            guestPhysAddr: guest.placeShmem(total),
            ...(options.maxMappingsPerRegion === undefined ? {} : { maxMappingsPerRegion: options.maxMappingsPerRegion }),
            ...(options.maxMappingsPerDevice === undefined ? {} : { maxMappingsPerDevice: options.maxMappingsPerDevice }),
            ...(options.requireSealedFds === undefined ? {} : { requireSealedFds: options.requireSealedFds }),
          });
          guest.space.addDevice(regions);
        } catch (err) {
          if (isRegionError(err))
            throw new FrontendError("BAD_SHMEM_CONFIG", `shared memory regions refused: ${err.message}`, { request: "GET_SHMEM_CONFIG" }, { cause: err });
          throw err;
        }
      }
    }
    const info: DeviceInfo = {
      features,
      protocolFeatures,
      ackedProtocolFeatures: acked,
      queueNum,
      maxMemSlots,
      config,
      shmem: regions?.regions() ?? [],
      dialect,
    };
    return { info, channel, regions, memRw, memRwBuffer };
  } catch (err) {
    channel?.close();
    if (regions !== undefined && regions !== previous?.regions) {
      guest.space.removeDevice(regions);
      regions.dispose();
    }
    throw err;
  }
}
