/**
 * The types a `DriverQueue` is made of and hands out: its options, its requests and the
 * standing chains of drivers that reuse their buffers.
 * @module
 */
import type { DriverBuffer } from "@vhostkit/virtqueue/driver";
import type { GuestMemory } from "@vhostkit/regions";
import type { FrontendError } from "./errors.js";
import type { GuestAllocator } from "./guest-allocator.js";

/** A request in a `DriverQueue`: its completion callbacks, deadline and chain. @internal */
export interface Pending {
  readonly resolve: (len: number) => void;
  readonly reject: (err: FrontendError) => void;
  /** `performance.now()` by which the device must have completed it (restarted after a reconnect). */
  deadline: number;
  readonly timeoutMs: number;
  /** The chain, kept while the request waits for free descriptors. */
  readonly readable: readonly DriverBuffer[];
  readonly writable: readonly DriverBuffer[];
  /** The queue of a standing chain (`DriverQueue.standing`): never timed, not in `#deadlines`. */
  readonly owner?: object;
  /** A standing chain is on the ring or waiting for descriptors. */
  queued?: boolean;
}

/**
 * A chain made once with `DriverQueue.standing` and made available again with
 * `DriverQueue.repost` after every completion (a driver's receive or transmit buffers): no
 * allocation, no timer bookkeeping per use. Its buffers' `len` may be changed between uses.
 */
export interface StandingChain {
  /** The device-readable buffers (their `len` may be set before each `DriverQueue.repost`). */
  readonly readable: readonly DriverBuffer[];
  /** The device-writable buffers. */
  readonly writable: readonly DriverBuffer[];
}

/** Options of `DriverQueue.create`. @internal */
export interface DriverQueueOptions {
  readonly index: number;
  readonly size: number;
  readonly memory: GuestMemory;
  readonly allocator: GuestAllocator;
  readonly timeoutMs: number;
  /** VIRTIO_F_EVENT_IDX was negotiated: the driver keeps `used_event` current and reads `avail_event`. */
  readonly eventIdx?: boolean;
  /** VIRTIO_F_RING_PACKED was negotiated: a packed ring (any size 1..32768) instead of a split one. */
  readonly packed?: boolean;
  /** Called when a request times out: the device is then failed (its in-flight buffers are lost). */
  readonly onFatal: (err: FrontendError) => void;
}
