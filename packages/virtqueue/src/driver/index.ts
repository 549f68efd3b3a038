/**
 * `@vhostkit/virtqueue/driver`: the driver side of split virtqueues — what vhostkit's generic
 * front-end uses to drive back-ends without a VM, and the mock guest for testing device code.
 * @packageDocumentation
 */
export { SplitDriver } from "./split-driver.js";
export type { DriverBuffer, SplitDriverOptions, UsedBuffer } from "./split-driver.js";
