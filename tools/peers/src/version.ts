/**
 * Minimum-version checks for peers from a moving distribution. The implementation is the
 * runtime-neutral `version.mjs` so `.mjs` child scripts and Node-bundled tests can use it too.
 */
export { assertVersionAtLeast, parseVersion } from "./version.mjs";
