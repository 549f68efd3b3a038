/**
 * Options shared by the commands that talk to a back-end, and their mapping to library options.
 */
import { Option, type Command } from "commander";
import { Dialects, type DialectName } from "@vhostkit/wire";
import type { DeviceOptions, TraceEvent } from "@vhostkit/frontend";

/** A usage error found after parsing (exit code 2). */
export class UsageError extends Error {}

/** The parsed shared options. */
export interface CommonFlags {
  readonly socket: string;
  readonly dialect: DialectName;
  readonly verbose?: boolean;
  readonly json?: boolean;
  readonly timeout: string;
  readonly trustShmemFds?: boolean;
  /** `--packed` (true), `--no-packed` (false), neither: packed rings when the back-end offers them. */
  readonly packed?: boolean;
}

/** Adds --socket, --dialect, --timeout, --verbose, --packed / --no-packed (and --json when `withJson`). */
export function addCommon(cmd: Command, withJson = true): Command {
  cmd
    .requiredOption("--socket <path>", "back-end unix socket")
    .addOption(new Option("--dialect <name>", "SHMEM dialect of the back-end").choices(Object.keys(Dialects)).default("upstream"))
    .option("--timeout <ms>", "per-request timeout in milliseconds", "5000")
    .option("--verbose", "trace every message (name, flags, size, fds) on stderr")
    .option("--trust-shmem-fds", "map SHMEM_MAP memfds that are not sealed against shrinking (a back-end that truncates one can crash this process)")
    .option("--packed", "require packed virtqueues (VIRTIO_F_RING_PACKED); default: packed when the back-end offers it")
    .option("--no-packed", "use split virtqueues even when the back-end offers packed ones");
  if (withJson) cmd.option("--json", "print one JSON object");
  return cmd;
}

function traceLine(e: TraceEvent): string {
  const arrow = e.direction === "send" ? "->" : "<-";
  const chan = e.channel === "frontend" ? "main   " : "backend";
  return `[${chan}] ${arrow} ${e.name} flags=0x${e.flags.toString(16)} size=${e.size} fds=${e.fds}\n`;
}

/** Parses an integer option. @throws UsageError. */
export function parseInteger(value: string, what: string, min = 0): number {
  if (!/^\d+$/.test(value)) throw new UsageError(`${what}: "${value}" is not a non-negative integer`);
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < min) throw new UsageError(`${what}: ${value} must be at least ${min}`);
  return n;
}

/** Library device options from the shared flags. */
export function deviceOptions(flags: CommonFlags): DeviceOptions {
  const timeoutMs = parseInteger(flags.timeout, "--timeout", 1);
  return {
    socketPath: flags.socket,
    dialect: flags.dialect,
    timeoutMs,
    ...(flags.trustShmemFds === true ? { requireSealedFds: false } : {}),
    ...(flags.packed === undefined ? {} : { packedRing: flags.packed }),
    ...(flags.verbose === true ? { trace: (e: TraceEvent) => void process.stderr.write(traceLine(e)) } : {}),
  };
}
