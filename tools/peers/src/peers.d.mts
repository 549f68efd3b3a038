/** The peer sets tools/peers/fetch.sh knows, with what each holds. */
export declare const PEER_SETS: Readonly<{ bookworm: string; sid: string; guest: string; dpdk: string }>;
/** A peer set name: `bookworm` (QEMU 7.2), `sid` (QEMU 11.1) or `guest` (a Linux guest kernel and busybox) or `dpdk` (DPDK 22.11's testpmd). */
export type PeerSet = keyof typeof PEER_SETS;
/** The directory fetch.sh fills: `$VHOSTKIT_CACHE/peers`, by default `${XDG_CACHE_HOME:-~/.cache}/vhostkit/peers`. */
export function peersCacheDir(): string;
/** A peer set that has not been fetched: the message is one line saying what to run. */
export class PeerMissingError extends Error {
  /** The set that is missing. */
  readonly set: string;
  constructor(set: string, program?: string);
}
/** The package versions a fetched set holds, or undefined when it is not fetched. */
export function peerVersions(set: PeerSet): string | undefined;
/** Throws {@link PeerMissingError} at once unless `program` of `set` has been fetched. */
export function requirePeer(set: PeerSet, program?: string): void;
/** The argv that runs `program` of a fetched set (its pid is the program's); throws {@link PeerMissingError} when not fetched. */
export function peerCommand(set: PeerSet, program: string): string[];
/** Whether this process may open a userfaultfd without UFFD_USER_MODE_ONLY (what libvhost-user checks before offering PAGEFAULT). */
export function userfaultfdAvailable(): boolean;
