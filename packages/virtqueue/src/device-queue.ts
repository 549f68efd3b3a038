/**
 * What every device-side queue offers, whatever its ring layout: the interface back-end frameworks
 * and devices program against, and the options split and packed queues share.
 *
 * @module
 */
import type { GuestMemory } from "@vhostkit/regions";
import type { ChainBatch } from "./chain-batch.js";
import type { VirtqueueError } from "./errors.js";
import type { RingAddressSpace } from "./ring-view.js";
import type { DirtyLogger, SegmentCursor } from "./segment-cursor.js";

/** Options {@link SplitQueue} and {@link PackedQueue} share (each adds its `size` and `addresses`). */
export interface DeviceQueueOptions {
  /** Guest memory the rings and buffers live in. Borrowed; replace it with `remap`. */
  readonly memory: GuestMemory;
  /** Address space of the ring addresses: `"user"` for SET_VRING_ADDR values (default `"guest"`). */
  readonly addressSpace?: RingAddressSpace;
  /** VIRTIO_F_EVENT_IDX negotiated: use the event indices instead of the plain flags. */
  readonly eventIdx?: boolean;
  /** VIRTIO_F_INDIRECT_DESC negotiated: accept indirect descriptors (otherwise a guest error). */
  readonly indirect?: boolean;
  /** Reject a device-readable descriptor after a device-writable one (default true, as docs/virtqueue.md#descriptors-and-chains requires). */
  readonly requireReadableFirst?: boolean;
  /** Most descriptors accepted in one indirect table (default 32768); longer tables are a guest error. */
  readonly maxIndirectLength?: number;
  /**
   * Called once, synchronously, when a guest error first marks the queue broken (before the error is
   * thrown): the back-end signals the queue's err fd here. Must not throw.
   */
  readonly onBroken?: (error: VirtqueueError) => void;
}

/**
 * The device-side operations of a virtqueue, split ({@link SplitQueue}) or packed
 * ({@link PackedQueue}); back-end frameworks and devices should program against this interface.
 * `batch.head(i)` is what `addUsed` takes back: the head descriptor index (split) or the buffer ID
 * (packed).
 */
export interface DeviceQueue {
  /** Pops up to `max` available chains into `batch`; returns how many. */
  pop(batch: ChainBatch, max?: number): number;
  /** Queues one used element (not yet visible to the driver). */
  addUsed(id: number, len: number): void;
  /** Queues one used element per chain of `batch`. */
  pushUsed(batch: ChainBatch, lens?: ArrayLike<number>): void;
  /** Publishes queued used elements; returns whether the driver must be notified. */
  publishUsed(): boolean;
  /**
   * True when the driver may have made a chain available since the last `pop` (one acquire load; `pop`
   * validates it): what a device polls while notifications are off.
   */
  hasAvailable(): boolean;
  /** Re-enables driver notifications; returns true when chains are already available. */
  enableNotification(): boolean;
  /** Asks the driver not to notify (a hint). */
  disableNotification(): void;
  /** Cursor over the segments of chain `chain` of `batch`. */
  segments(batch: ChainBatch, chain: number, cursor?: SegmentCursor): SegmentCursor;
  /**
   * Starts processing at `base` (default: the current base): the SET_VRING_BASE `num` — split: the
   * next avail index; packed: offsets and wrap counters.
   */
  start(base?: number): void;
  /** Stops processing; returns the GET_VRING_BASE `num` (the value `start` resumes from). */
  stop(): number;
  /** Replaces the guest memory (after a memory table change) and maps the rings again when started. */
  remap(memory?: GuestMemory): void;
  /**
   * True when VIRTIO_F_EVENT_IDX is in use: the driver names the used index it wants a
   * notification at, so a `publishUsed` past it signals nothing and publishing often is cheap.
   */
  readonly eventIdx: boolean;
  /** The guest memory in use (what `readChain` / `writeChain` should be given). */
  readonly memory: GuestMemory;
  /** True between `start` and `stop`. */
  readonly started: boolean;
  /** The guest error that broke the queue, if any. */
  readonly brokenBy: VirtqueueError | undefined;
  /** Dirty page logging of chain writes (`writeChain`); `undefined`: off (docs/protocol.md#dirty-page-logging). */
  dirtyLog: DirtyLogger | undefined;
}
