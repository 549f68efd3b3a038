/**
 * `@vhostkit/transport/sys`: the thin libc layer (koffi) shared by transport and regions.
 * Only this directory imports koffi.
 * @packageDocumentation
 */
export * from "./mman.js";
export { warmUpSys } from "./warm-up.js";
export { describeErrno, errnoName } from "../errno-text.js";
