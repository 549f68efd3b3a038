// Runtime-neutral (Node and Bun) access to the third-party peers fetched by tools/peers/fetch.sh.
// Types live in peers.d.mts.
import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const RUN_SH = fileURLToPath(new URL("../run.sh", import.meta.url));

/** What each peer set holds, for messages. */
export const PEER_SETS = Object.freeze({
  bookworm: "QEMU 7.2 (Debian 12)",
  sid: "QEMU 11.1, virtiofsd 1.14 and vhost-device-vsock 0.3 (Debian unstable)",
  guest: "a Linux guest (Debian 12 kernel and busybox)",
  dpdk: "DPDK 22.11 testpmd (Debian 12)",
});

/** The directory fetch.sh fills: `$VHOSTKIT_CACHE/peers`, by default `${XDG_CACHE_HOME:-~/.cache}/vhostkit/peers`. */
export function peersCacheDir() {
  const base = process.env.VHOSTKIT_CACHE || join(process.env.XDG_CACHE_HOME || join(homedir(), ".cache"), "vhostkit");
  return join(base, "peers");
}

/** A peer set that has not been fetched: the message is one line saying what to run. */
export class PeerMissingError extends Error {
  constructor(set, program) {
    const dir = join(peersCacheDir(), set);
    const what = `${program === undefined ? "" : `${program} of `}${PEER_SETS[set] ?? set}`;
    super(`${what} is not fetched into ${dir}: run \`sh tools/peers/fetch.sh ${set}\` (needs Debian's package mirror, no root)`);
    this.name = "PeerMissingError";
    this.set = set;
  }
}

/** The package versions a fetched set holds (first line of its stamp), or undefined when not fetched. */
export function peerVersions(set) {
  const stamp = join(peersCacheDir(), set, "ready");
  if (!existsSync(stamp)) return undefined;
  return readFileSync(stamp, "utf8").split("\n")[0] ?? "";
}

/** Throws {@link PeerMissingError} at once unless `program` of `set` has been fetched. */
export function requirePeer(set, program) {
  if (!(set in PEER_SETS)) throw new Error(`unknown peer set '${set}' (known: ${Object.keys(PEER_SETS).join(", ")})`);
  const root = join(peersCacheDir(), set, "root");
  const installed = (p) => ["usr/bin", "usr/lib/qemu", "usr/libexec"].some((d) => existsSync(join(root, d, p)));
  if (peerVersions(set) === undefined || (program !== undefined && !installed(program))) {
    throw new PeerMissingError(set, program);
  }
}

/**
 * The argv that runs `program` of a fetched peer set through run.sh (its pid is the program's).
 * Throws {@link PeerMissingError} at once when the set is not fetched.
 */
export function peerCommand(set, program) {
  requirePeer(set, program);
  return ["sh", RUN_SH, set, program];
}

/**
 * Whether this process may open a userfaultfd without `UFFD_USER_MODE_ONLY` — what libvhost-user
 * checks before it offers VHOST_USER_PROTOCOL_F_PAGEFAULT. Linux allows it when
 * `vm.unprivileged_userfaultfd` is 1 or the caller has CAP_SYS_PTRACE; without the sysctl the
 * kernel has no userfaultfd at all.
 */
export function userfaultfdAvailable() {
  let sysctl;
  try {
    sysctl = readFileSync("/proc/sys/vm/unprivileged_userfaultfd", "utf8").trim();
  } catch {
    return false;
  }
  if (sysctl === "1") return true;
  const capEff = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync("/proc/self/status", "utf8"))?.[1] ?? "0";
  const CAP_SYS_PTRACE = 19n;
  return ((BigInt(`0x${capEff}`) >> CAP_SYS_PTRACE) & 1n) === 1n;
}
