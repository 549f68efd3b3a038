/**
 * `@vhostkit/virtqueue/driver`: the driver side of split ({@link SplitDriver}) and packed
 * ({@link PackedDriver}) virtqueues — what vhostkit's generic front-end uses to drive back-ends
 * without a VM, and the mock guest for testing device code.
 * @packageDocumentation
 */
export { SplitDriver } from "./split-driver.js";
export type { SplitDriverOptions } from "./split-driver.js";
export { PackedDriver } from "./packed-driver.js";
export type { PackedDriverOptions } from "./packed-driver.js";
export type { DriverBuffer, DriverQueueOptions, UsedBuffer } from "./driver-buffer.js";
export { UsedBatch } from "./driver-buffer.js";
