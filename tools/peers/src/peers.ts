/**
 * Third-party vhost-user peers fetched from Debian by `tools/peers/fetch.sh` (no root): where they
 * are, how to start one, and what the host lets them offer. The implementation is the
 * runtime-neutral `peers.mjs`, so `.mjs` child scripts and Node-bundled tests can use it too.
 */
export { PEER_SETS, PeerMissingError, peerCommand, peerVersions, peersCacheDir, requirePeer, userfaultfdAvailable } from "./peers.mjs";
export type { PeerSet } from "./peers.mjs";
