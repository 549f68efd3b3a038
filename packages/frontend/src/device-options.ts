/**
 * What a device is opened and started with, and the defaults of those options.
 * @module
 */
import { ProtocolFeature, VirtioFeature, type Dialect, type DialectName } from "@vhostkit/wire";
import type { Endpoint, RetryPolicy } from "@vhostkit/transport";
import type { BackendRequestOutcome } from "./backend-request-handler.js";
import type { ReconnectPolicy } from "./reconnect.js";
import type { TraceSink } from "./trace.js";

/**
 * Protocol features this front-end knows how to use (the dialect's SHMEM bit is added per
 * connection): MQ, REPLY_ACK, BACKEND_REQ, CONFIG, BACKEND_SEND_FD, RESET_DEVICE, CONFIGURE_MEM_SLOTS,
 * DEVICE_STATE (docs/protocol.md#device-state-transfer).
 */
export const SUPPORTED_PROTOCOL_FEATURES: bigint =
  ProtocolFeature.MQ |
  ProtocolFeature.REPLY_ACK |
  ProtocolFeature.BACKEND_REQ |
  ProtocolFeature.CONFIG |
  ProtocolFeature.BACKEND_SEND_FD |
  ProtocolFeature.RESET_DEVICE |
  ProtocolFeature.CONFIGURE_MEM_SLOTS |
  ProtocolFeature.DEVICE_STATE;

/**
 * Mask of the feature bits a driver may ask for: device-specific bits 0–23 and the ring bits 28
 * (INDIRECT_DESC), 29 (EVENT_IDX) and 34 (RING_PACKED, which {@link DeviceOptions.packedRing}
 * decides: by default it is used whenever the back-end offers it).
 */
export const DRIVER_FEATURE_MASK: bigint = ((1n << 24n) - 1n) | VirtioFeature.INDIRECT_DESC | VirtioFeature.EVENT_IDX | VirtioFeature.RING_PACKED;

/** Default cap on the total size of a device's shared memory regions (64 GiB of address space). */
export const DEFAULT_MAX_SHMEM_BYTES = 64n << 30n;

/** Options of {@link Guest.addDevice}. */
export interface DeviceOptions {
  /** Unix socket of the back-end (the front-end connects). Either this or `endpoint`. */
  readonly socketPath?: string;
  /** An already connected endpoint (ownership is taken), e.g. one end of a socketpair. */
  readonly endpoint?: Endpoint;
  /** Retry the connect while the back-end starts. */
  readonly retry?: RetryPolicy;
  /** SHMEM dialect of this device (default `"upstream"`). */
  readonly dialect?: Dialect | DialectName;
  /** Per-request timeout in milliseconds, control messages and virtqueue requests (default 5000). */
  readonly timeoutMs?: number;
  /** Protocol features the front-end may accept (default {@link SUPPORTED_PROTOCOL_FEATURES} + the dialect's SHMEM bit). */
  readonly protocolFeatures?: bigint;
  /** GET_CONFIG size in bytes (1–256); default: the largest size the back-end accepts (discovered). */
  readonly configSize?: number;
  /** Per-region cap on live SHMEM mappings (regions default 256). */
  readonly maxMappingsPerRegion?: number;
  /** Per-device cap on live SHMEM mappings (regions default 1024). */
  readonly maxMappingsPerDevice?: number;
  /**
   * Refuse SHMEM_MAP of memfds not sealed against shrinking (default true; see the regions
   * package's `requireSealedFds`: a truncated mapping would kill this process with SIGBUS).
   */
  readonly requireSealedFds?: boolean;
  /** Cap on the total advertised shared memory in bytes (default {@link DEFAULT_MAX_SHMEM_BYTES}). */
  readonly maxShmemBytes?: bigint;
  /** Receives every message on both sockets (`--verbose`). */
  readonly trace?: TraceSink;
  /**
   * Serve vhostkit's MEM_READ / MEM_WRITE extension (docs/shmem.md#vhostkit-memory-access-extension) when the back-end offers it:
   * `true` for the default gate bit 63, or `{ bit }`. The back-end may then reach any guest RAM or
   * live shared-memory mapping of any device through the front-end. Default: off.
   */
  readonly memRw?: boolean | { readonly bit: number };
  /**
   * How this back-end reaches other devices' shared-memory mappings (docs/shmem.md#propagation-policy):
   * - `"propagate"`: eager propagation into its memory table only;
   * - `"mem-rw"`: never propagated; MEM_READ/MEM_WRITE only (needs `memRw` negotiated);
   * - `"auto"` (default): propagated while the back-end has room (memory slots, or 8 regions without
   *   CONFIGURE_MEM_SLOTS), MEM_READ/MEM_WRITE for the rest when negotiated.
   * When a new mapping of another device could not reach this back-end at all, that device's
   * SHMEM_MAP is refused with a clear reason instead of leaving this back-end blind to it.
   */
  readonly sharedMemoryPolicy?: "propagate" | "mem-rw" | "auto";
  /** Receives the outcome of every back-end request. */
  readonly onBackendRequest?: (outcome: BackendRequestOutcome) => void;
  /**
   * Reconnect automatically when the back-end dies (docs/protocol.md#inflight-tracking-and-reconnect;
   * needs `socketPath`): guest memory and the rings stay, this back-end's shared-memory mappings go
   * (and out of every other back-end's table), the device connects to the same socket again (backing
   * off per the policy, never blocking the event loop), negotiates the same features, sends the
   * memory table and the inflight area, and restarts each ring; requests outstanding at the loss
   * complete on the new back-end, once each. With a policy the device asks for INFLIGHT_SHMFD; split
   * and packed rings both reconnect (a back-end without INFLIGHT_SHMFD gets the outstanding
   * requests laid out again on the ring). Default: none (a lost back-end fails the device).
   */
  readonly reconnect?: ReconnectPolicy;
  /**
   * The packed ring layout (VIRTIO_F_RING_PACKED, docs/virtqueue.md#packed-rings): by default
   * (`undefined`) used whenever the back-end offers it; `true` requires it ({@link Device.start}
   * fails with `NEGOTIATION` when the back-end does not offer it); `false` never uses it (split
   * rings). The CLI's `--packed` / `--no-packed`.
   */
  readonly packedRing?: boolean;
  /**
   * Dirty page logging for live migration (docs/protocol.md#dirty-page-logging): ask for LOG_SHMFD, so that
   * {@link Device.startDirtyLog} can hand the back-end a log. Default: off.
   */
  readonly dirtyLog?: boolean;
}

/** Options of {@link Device.start}. */
export interface StartOptions {
  /**
   * Device-specific and ring feature bits the driver wants; masked with what was offered and
   * {@link DRIVER_FEATURE_MASK}. RING_PACKED is not taken from here: {@link DeviceOptions.packedRing}
   * decides it.
   */
  readonly features?: bigint;
  /** Queue indices to set up (default `[0]`). */
  readonly queues?: readonly number[];
  /** Queue size (default 64): a power of two on split rings, any of 1..32768 on packed rings. */
  readonly queueSize?: number;
}
