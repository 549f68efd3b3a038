/**
 * `vhost-user-device fs`: a virtio-fs back-end (virtiofsd) as a file system without a VM — list a
 * directory, read, stat, write or remove a file through FUSE over the device's queues.
 */
import { readFile, writeFile } from "node:fs/promises";
import { Command } from "commander";
import { FsDriver, type FuseAttr } from "@vhostkit/frontend";
import { withDevice } from "../device-session.js";
import { addCommon, deviceOptions, UsageError, type CommonFlags } from "../options.js";
import { json, table } from "../output.js";

interface FsFlags extends CommonFlags {
  readonly out?: string;
}

/** virtio-fs config space without NOTIFICATION: tag and queue count (docs/virtio-fs.md#virtio-fs-configuration-space). */
const FS_CONFIG_SIZE = 40;

/** The operations and how many path arguments each takes. */
const OPERATIONS = { ls: 1, cat: 1, stat: 1, put: 2, rm: 1 } as const;
type Operation = keyof typeof OPERATIONS;

/** `d_type` and `st_mode` file types as words. */
const DT_NAMES: Record<number, string> = { 1: "fifo", 2: "char", 4: "dir", 6: "block", 8: "file", 10: "symlink", 12: "socket" };
const MODE_TYPES: Record<number, string> = { 2401: "fifo", 4802: "char", 9604: "dir", 14406: "block", 16807: "file", 21609: "symlink", 26411: "socket" };

function typeOfMode(mode: number): string {
  return MODE_TYPES[mode & 0o170000] ?? "unknown";
}

/** A stat result for output: numbers stay numbers up to 2^53, else decimal strings. */
function statObject(path: string, a: FuseAttr): Record<string, unknown> {
  const n = (v: bigint): number | string => (v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString());
  return {
    path,
    type: typeOfMode(a.mode),
    mode: `0${(a.mode & 0o7777).toString(8)}`,
    size: n(a.size),
    ino: n(a.ino),
    nlink: a.nlink,
    uid: a.uid,
    gid: a.gid,
    blocks: n(a.blocks),
    blksize: a.blksize,
    mtime: new Date(Number(a.mtime) * 1000 + Math.floor(a.mtimeNsec / 1e6)).toISOString(),
  };
}

/** Checks the operation and its arguments. @throws UsageError. */
function parse(op: string, args: readonly string[]): { readonly op: Operation; readonly args: readonly string[] } {
  if (!(op in OPERATIONS)) throw new UsageError(`fs: unknown operation "${op}" (ls DIR | cat FILE | stat PATH | put LOCAL PATH | rm PATH)`);
  const want = OPERATIONS[op as Operation];
  if (args.length !== want) throw new UsageError(`fs ${op}: takes ${want === 1 ? "one path" : "LOCAL PATH"}, got ${args.length} argument(s)`);
  return { op: op as Operation, args };
}

async function run(fs: FsDriver, op: Operation, args: readonly string[], flags: FsFlags, local: Uint8Array | undefined): Promise<void> {
  const path = args[args.length - 1] as string;
  const out = (o: Record<string, unknown>, text: string): void => void process.stdout.write(`${flags.json === true ? json(o) : text}\n`);
  switch (op) {
    case "ls": {
      const entries = (await fs.list(path)).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      const rows = entries.map((e) => ({
        name: e.name,
        type: DT_NAMES[e.type] ?? (e.attr === undefined ? "unknown" : typeOfMode(e.attr.mode)),
        size: e.attr === undefined ? null : Number(e.attr.size),
      }));
      out({ path, entries: rows }, rows.length === 0 ? "(empty)" : table(rows.map((r) => [r.type, r.size === null ? "-" : String(r.size), r.name])));
      return;
    }
    case "cat": {
      const data = await fs.readFile(path);
      if (flags.out !== undefined) {
        await writeFile(flags.out, data);
        if (flags.json === true) out({ op: "cat", path, bytes: data.byteLength, out: flags.out }, "");
      } else await new Promise<void>((resolve, reject) => process.stdout.write(data, (e) => (e ? reject(e) : resolve())));
      return;
    }
    case "stat": {
      const s = statObject(path, await fs.stat(path));
      out(s, table(Object.entries(s).map(([k, v]) => [k, String(v)])));
      return;
    }
    case "put": {
      const data = local as Uint8Array;
      await fs.writeFile(path, data);
      out({ op: "put", path, bytes: data.byteLength }, `${args[0]} -> ${path}: ${data.byteLength} bytes`);
      return;
    }
    case "rm":
      await fs.unlink(path);
      out({ op: "rm", path }, `removed ${path}`);
      return;
    default: {
      const never: never = op;
      throw new UsageError(`fs: unknown operation ${String(never)}`);
    }
  }
}

/** Builds the `fs` subcommand. */
export function fsCommand(): Command {
  const cmd = new Command("fs")
    .description(
      "a virtio-fs back-end (virtiofsd) as a file system: ls DIR | cat FILE | stat PATH | put LOCAL PATH | rm PATH (paths relative to the shared directory)",
    )
    .argument("<operation>", "ls, cat, stat, put or rm")
    .argument("<paths...>", "the operation's paths");
  addCommon(cmd)
    .option("--out <file>", "cat: write the file here instead of stdout")
    .action(async (operation: string, paths: string[], flags: FsFlags) => {
      const { op, args } = parse(operation, paths);
      if (flags.out !== undefined && op !== "cat") throw new UsageError("fs: --out goes with cat");
      const opts = deviceOptions(flags);
      const local =
        op === "put"
          ? new Uint8Array(
              await readFile(args[0] as string).catch((e: unknown) => Promise.reject(new UsageError(`fs put: ${e instanceof Error ? e.message : String(e)}`))),
            )
          : undefined;
      await withDevice({ ...opts, configSize: FS_CONFIG_SIZE }, async (device) => {
        const fs = await FsDriver.attach(device);
        try {
          await run(fs, op, args, flags, local);
        } finally {
          await fs.close();
        }
      });
    });
  return cmd;
}
