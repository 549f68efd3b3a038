/** Moved to `helpers/ram-blk-process.ts`; re-exported here for test files that still import it from this path (remove once none does). */
export { startRamBlk, type RamBlkProcess } from "./helpers/ram-blk-process.js";
