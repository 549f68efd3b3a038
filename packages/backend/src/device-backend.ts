/**
 * The small interface a device implements; the framework handles the protocol.
 * @module
 */
import type { GuestMemory } from "@vhostkit/regions";
import type { DeviceQueue } from "@vhostkit/virtqueue";
import type { BackendChannel } from "./backend-client.js";
import type { StateReader, StateWriter } from "./device-state.js";

/** One VIRTIO Shared Memory Region a device declares (GET_SHMEM_CONFIG). */
export interface ShmemRegionSpec {
  /** VIRTIO shmid, 0..255 (virtio-gpu: 1 = host-visible memory). */
  readonly shmid: number;
  /** Size in bytes: non-zero and a multiple of the page size. */
  readonly size: bigint;
}

/** What a device's queue handler gets each time its queue may have work. */
export interface QueueContext {
  /** Queue index (0-based). */
  readonly index: number;
  /**
   * The device side of the ring: `pop`, `segments`, `pushUsed`/`addUsed`. A `SplitQueue`, or a
   * `PackedQueue` when the driver acknowledged VIRTIO_F_RING_PACKED (docs/virtqueue.md#packed-rings):
   * the same operations, and `batch.head(i)` is what `addUsed` takes back either way.
   */
  readonly queue: DeviceQueue;
  /** Guest memory (the memory table; with the fallback, also remote memory) for `readChain`/`writeChain`. */
  readonly memory: GuestMemory;
  /**
   * Publish the used elements queued so far and signal the call fd if the driver asked for it
   * (EVENT_IDX or the NO_INTERRUPT flag). The framework also does this after the handler returns.
   */
  notify(): void;
  /**
   * The device found a guest error in this queue's buffers that the ring layer cannot see (a
   * malformed request of the device's own protocol): the queue is broken as if by a ring error — its
   * err fd is signalled, `queue-broken` is reported with `error`, and its handler does not run again
   * until the ring restarts. Other queues carry on. Idempotent (the first error stays); a no-op once
   * the ring stopped. May be called from another queue's handler (e.g. a network device filling its
   * receive queue from its transmit queue's handler).
   */
  fail(error: unknown): void;
}

/** What a device sees of its connection while it runs (between {@link DeviceBackend.start} and stop). */
export interface DeviceContext {
  /** Virtio features the driver acknowledged (SET_FEATURES). */
  readonly features: bigint;
  /** Sends back-end requests: SHMEM_MAP/UNMAP, CONFIG_CHANGE_MSG, MEM_READ/MEM_WRITE. */
  readonly client: BackendChannel;
  /** Guest memory as the front-end described it. */
  readonly memory: GuestMemory;
}

/**
 * A vhost-user device. Required: features, queue count and size, and the queue handler. Everything
 * else is optional: a missing hook makes the framework answer "unsupported" (a failure reply) or not
 * offer the feature at all (CONFIG without `getConfig`, SHMEM without `shmemRegions`).
 *
 * The framework offers VERSION_1, VHOST_USER_F_PROTOCOL_FEATURES, EVENT_IDX, INDIRECT_DESC and
 * RING_PACKED (see {@link DeviceBackend.packedRing}) on top of `features`, and the protocol features MQ, REPLY_ACK, BACKEND_REQ, BACKEND_SEND_FD,
 * CONFIGURE_MEM_SLOTS, STATUS, RESET_DEVICE, INFLIGHT_SHMFD (+ CONFIG, SHMEM, DEVICE_STATE, vhostkit MEM_RW when applicable).
 */
export interface DeviceBackend {
  /**
   * Device-specific virtio feature bits offered to the driver (bigint mask). Not
   * VIRTIO_F_ACCESS_PLATFORM: the framework has no IOTLB, so that bit is a `BAD_DEVICE` error.
   */
  readonly features: bigint;
  /** Number of virtqueues (GET_QUEUE_NUM). */
  readonly queueCount: number;
  /** Largest queue size the device accepts (power of two, <= 32768). */
  readonly maxQueueSize: number;
  /**
   * Offer VIRTIO_F_RING_PACKED (default true): the framework then runs the rings of a driver that
   * acknowledges it as packed rings, behind the same `QueueContext.queue` interface. `false`
   * opts out (split rings only), e.g. for a device that reaches past `DeviceQueue`.
   */
  readonly packedRing?: boolean;
  /**
   * Handle queue `ctx.index`: pop chains, read/write their segments, push used elements. Called on
   * every kick, once when the ring starts, and again while more chains are available. May be async;
   * the framework does not call it again for the same queue until it settles. A thrown
   * `VirtqueueError` (a guest error) marks the queue broken and signals its err fd.
   *
   * Returning `false` (or resolving to it) says the chains left in the ring are not work for now —
   * a receive queue the device fills only when it has something to deliver: the framework then
   * neither runs the handler again for them nor re-enables the driver's notifications (it disabled
   * them before the call); the handler calls `queue.enableNotification()` itself when it wants the
   * next kick (e.g. once it ran out of buffers). Any other value: the handler runs again while
   * chains are available, and notifications are re-enabled once none are.
   */
  processQueue(ctx: QueueContext): void | boolean | Promise<void> | Promise<boolean | undefined>;
  /** Config space read (GET_CONFIG): exactly `size` bytes from `offset`, or throw to refuse. */
  getConfig?(offset: number, size: number): Uint8Array;
  /** Config space write (SET_CONFIG; `flags` 0 = driver write, 1 = migration); throw to refuse. */
  setConfig?(offset: number, data: Uint8Array, flags: number): void;
  /** The device's VIRTIO Shared Memory Regions (fixed for the connection's life). */
  shmemRegions?(): readonly ShmemRegionSpec[];
  /** The driver acknowledged `features` (SET_FEATURES). */
  featuresAcked?(features: bigint): void;
  /** The device is running (a ring started, which front-ends do after DRIVER_OK): it may map shared memory now. */
  start?(ctx: DeviceContext): void | Promise<void>;
  /** The front-end stopped the device (GET_VRING_BASE, SET_STATUS 0, reset or disconnect). No more back-end requests. */
  stop?(): void;
  /** Device reset (RESET_DEVICE, RESET_OWNER or disconnect): return to the initial state. */
  reset?(): void;
  /**
   * Save the device's internal state for migration (SET_DEVICE_STATE_FD, direction save;
   * docs/protocol.md#device-state-transfer): write it as bytes into `out`, in any format the
   * device's `loadState` reads back. Called only while every ring is stopped; the framework closes
   * the pipe (the front-end's EOF) once the returned promise settles. Guest memory mappings and
   * shared memory mappings belong to the front-end: save what is needed to re-create them.
   * With `loadState`, makes the framework offer the DEVICE_STATE protocol feature.
   */
  saveState?(out: StateWriter): void | Promise<void>;
  /**
   * Load state a `saveState` produced (direction load), replacing the current one. Called only
   * while every ring is stopped, before the front-end starts them again with the saved vring bases.
   * Throw to refuse the bytes (a `BackendError` as is, anything else becomes `STATE_INVALID`). The
   * framework also refuses state with bytes left after the hook returns; a device that must not
   * commit such state checks `input.atEnd()` itself before committing.
   */
  loadState?(input: StateReader): void | Promise<void>;
}
