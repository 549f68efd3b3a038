/**
 * `@vhostkit/virtqueue`: virtqueues for vhost-user back-ends — split (VIRTIO 1.2 §2.7) and packed
 * (VIRTIO_F_RING_PACKED, §2.8); docs/virtqueue.md.
 *
 * A back-end receives the ring addresses (SET_VRING_NUM / SET_VRING_ADDR / SET_VRING_BASE), starts
 * the ring at SET_VRING_KICK and, on each kick, pops the descriptor chains the guest driver made
 * available, reads and writes their buffers, pushes used elements and — depending on
 * VIRTIO_F_EVENT_IDX or the driver's suppression flags — signals the call fd. {@link SplitQueue}
 * and {@link PackedQueue} are that device side, behind one {@link DeviceQueue} interface: batch
 * `pop` / `pushUsed` / `publishUsed` without per-chain allocation, every walk bounded against
 * hostile guests (typed {@link VirtqueueError}, queue marked broken). Buffers are
 * reached through the `GuestMemory` interface of `@vhostkit/regions` (type only): a buffer crossing
 * regions yields several segments, and a buffer outside the memory table yields a `"remote"`
 * segment that {@link readChain} / {@link writeChain} serve through `GuestMemory.read` / `write` —
 * the MEM_READ/MEM_WRITE fallback — without device code changing.
 *
 * The driver side lives in `@vhostkit/virtqueue/driver`, an in-memory guest memory for tests in
 * `@vhostkit/virtqueue/testing`. Memory-ordering rules: `barriers.ts` and DESIGN.md.
 * @packageDocumentation
 */
export { VirtqueueError, isVirtqueueError } from "./errors.js";
export type { VirtqueueErrorCode } from "./errors.js";
export {
  MAX_QUEUE_SIZE,
  DESC_SIZE,
  DescFlag,
  AVAIL_F_NO_INTERRUPT,
  USED_F_NO_NOTIFY,
  RingFeatureBit,
  RING_ALIGN,
  isValidQueueSize,
  splitLayout,
  checkRingAlignment,
  needEvent,
} from "./layout.js";
export type { SplitLayout, RingAddresses } from "./layout.js";
export type { RingAddressSpace } from "./ring-view.js";
export { ChainBatch } from "./chain-batch.js";
export { SegmentCursor, readChain, writeChain } from "./segment-cursor.js";
export type { SegmentKind, GuestErrorSink, DirtyLogger } from "./segment-cursor.js";
export { SplitQueue } from "./split-queue.js";
export type { SplitQueueOptions } from "./split-queue-options.js";
export { SPLIT_INFLIGHT_VERSION, SplitInflight, splitInflightQueueBytes } from "./split-inflight.js";
export type { SplitInflightRecovery } from "./split-inflight.js";
export { PACKED_INFLIGHT_VERSION, PackedInflight, packedInflightQueueBytes } from "./packed-inflight.js";
export type { PackedInflightRecovery } from "./packed-inflight.js";
export type { DeviceQueue, DeviceQueueOptions } from "./device-queue.js";
export {
  PackedDescFlag,
  RingEventFlag,
  PACKED_RING_ALIGN,
  isValidPackedQueueSize,
  packedLayout,
  checkPackedRingAlignment,
  packedNeedEvent,
} from "./packed-layout.js";
export type { PackedLayout } from "./packed-layout.js";
export { FRESH_PACKED_VRING_BASE, packedInFlight, packedVringBaseNum, toPackedVringBase } from "./packed-base.js";
export { PackedQueue } from "./packed-queue.js";
export type { PackedQueueOptions } from "./packed-queue.js";
