/**
 * qemu-storage-daemon (QEMU 7.2, Debian 12) as a vhost-user-blk back-end peer for tests and
 * benchmarks. The implementation is the runtime-neutral `qsd.mjs` so `.mjs` child scripts and
 * Node-bundled tests can use it too.
 */
export { startQsd, qsdVersion } from "./qsd.mjs";
export type { QsdOptions, QsdHandle } from "./qsd.mjs";
