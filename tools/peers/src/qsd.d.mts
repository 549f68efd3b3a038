import type { PeerSet } from "./peers.mjs";
/** Options for {@link startQsd}. */
export interface QsdOptions {
  /** `file` = raw image in the temp dir (default); `null-co` = null driver for benchmarks. */
  backend?: "file" | "null-co";
  /** Disk size in bytes (default 1 MiB). Capacity in config = sizeBytes / 512. */
  sizeBytes?: number;
  /** Export writable (default true; qsd then does not offer VIRTIO_BLK_F_RO). */
  writable?: boolean;
  /** `num-queues=` of the export (qsd default 1). */
  numQueues?: number;
  /** `logical-block-size=` of the export (qsd default 512). */
  logicalBlockSize?: number;
  /**
   * The fetched peer set whose qsd runs (tools/peers/fetch.sh): `bookworm` = QEMU 7.2 (default),
   * `sid` = QEMU 11.1. Unfetched: startQsd rejects at once with a PeerMissingError.
   */
  peer?: PeerSet;
  /** A binary to run instead of the peer set's (e.g. `qemu-storage-daemon` on PATH). */
  binary?: string;
  /** Program and leading arguments to run instead of `peer`/`binary`. Its pid must be qsd's (exec). */
  command?: readonly string[];
  /** Readiness bound in milliseconds (default 10000). */
  readyTimeoutMs?: number;
  /**
   * The export's socket path (default: a fresh one in `dir`). A stale socket file there (a killed
   * daemon's) is replaced, so a daemon can be started again on the same socket. Not removed by `stop()`.
   */
  socketPath?: string;
  /** An existing raw disk image to export instead of a fresh one (`backend` and `sizeBytes` are then ignored). Not removed by `stop()`. */
  image?: string;
}
/** A running qemu-storage-daemon. */
export interface QsdHandle {
  /** Unix socket path of the vhost-user-blk export (inside `dir`). */
  readonly socketPath: string;
  /** Fresh temp dir holding the socket and image; removed by `stop()`. */
  readonly dir: string;
  /** Child pid. */
  readonly pid: number;
  /** Arguments passed to qemu-storage-daemon. */
  readonly args: readonly string[];
  /** Everything the daemon wrote to stderr so far. */
  stderr(): string;
  /** SIGTERM (SIGKILL after 5 s), wait for exit, remove the temp dir. */
  stop(): Promise<{ code: number | null; signal: string | null } | null>;
  /** SIGKILL (a crash: no clean shutdown), wait for exit, remove the temp dir. */
  kill(): Promise<{ code: number | null; signal: string | null } | null>;
}
/** Start qsd and wait until its socket accepts a connection. Rejects if it exits or times out. */
export function startQsd(opts?: QsdOptions): Promise<QsdHandle>;
/** First line of `qemu-storage-daemon --version`, for the qsd `opts` selects as in {@link startQsd}. */
export function qsdVersion(opts?: Pick<QsdOptions, "peer" | "binary" | "command">): Promise<string>;
