/**
 * The options of a split queue ({@link SplitQueueOptions}) and the checks of those its
 * constructor takes as given.
 * @module
 */
import type { DeviceQueueOptions } from "./device-queue.js";
import { MAX_QUEUE_SIZE, type RingAddresses } from "./layout.js";
import type { SplitInflight } from "./split-inflight.js";

/** Options of a {@link SplitQueue}. */
export interface SplitQueueOptions extends DeviceQueueOptions {
  /** Queue size: a power of two in 1..32768 (SET_VRING_NUM). */
  readonly size: number;
  /** Ring addresses (SET_VRING_ADDR); checked for the alignment of docs/virtqueue.md#ring-layout. */
  readonly addresses: RingAddresses;
  /**
   * Inflight I/O tracking (docs/protocol.md#inflight-tracking-and-reconnect): this queue's region
   * of the inflight area, made for at least `size` descriptors. Every chain taken is marked in it
   * before `pop` returns and cleared once its used element is published; the first {@link SplitQueue.start}
   * resubmits what an earlier back-end process left in flight, before any new avail entry.
   */
  readonly inflight?: SplitInflight;
}

/**
 * `maxIndirectLength` of `options` (default: the largest queue size).
 * @throws RangeError when it is not a positive integer.
 */
export function maxIndirectLength(options: SplitQueueOptions): number {
  const max = options.maxIndirectLength ?? MAX_QUEUE_SIZE;
  if (!Number.isInteger(max) || max < 1) throw new RangeError(`maxIndirectLength ${max} must be a positive integer`);
  return max;
}
