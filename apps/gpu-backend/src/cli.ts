/**
 * `vhostkit-gpu` command line: argv → options → {@link GpuDevice} served on a socket. Every stdout
 * line is one JSON object: `{"event":"listening",...}` once the socket accepts connections, then
 * (with `--events`) one line per command, lifecycle change and screenshot.
 * @module
 */
import { createHash } from "node:crypto";
import { parseArgs } from "node:util";
import { serve } from "@vhostkit/backend";
import { Dialects, type DialectName } from "@vhostkit/wire";
import { DEFAULT_SHM_SIZE, GpuDevice, isPowerOfTwo } from "./device.js";
import { screenshotWriter } from "./screenshot.js";
import { GpuCmd, HOST_VISIBLE_SHMID, respName } from "./virtio-gpu.js";
import { INSTALL_LINE, versionText } from "./version.js";

/** A bad command line (exit code 2). */
export class UsageError extends Error {}

const USAGE = `${INSTALL_LINE}
usage: vhostkit-gpu --socket PATH [--shm-size BYTES|NK|NM|NG] [--dialect ${Object.keys(Dialects).join("|")}]
                    [--screenshot-dir DIR] [--width PX --height PX] [--once] [--events]
                    [--mem-rw] [--max-slots N] [--sealed-memory] [--version]`;

/** Parses a size: bytes, or a number with K/M/G (binary) and an optional "iB"/"B". @throws UsageError. */
export function parseSize(text: string, what: string): bigint {
  const m = /^(\d+)\s*([kmg]?)(i?b)?$/i.exec(text.trim());
  if (m === null) throw new UsageError(`${what}: "${text}" is not a size`);
  const shift = { "": 0n, k: 10n, m: 20n, g: 30n }[(m[2] ?? "").toLowerCase() as "" | "k" | "m" | "g"];
  return BigInt(m[1] as string) << shift;
}

function cmdName(type: number): string {
  for (const [k, v] of Object.entries(GpuCmd)) if (v === type) return k;
  return `0x${type.toString(16)}`;
}

/** Runs the back-end until SIGTERM/SIGINT (or the first front-end leaves, with `--once`). @returns the exit code. */
export async function runCli(argv: readonly string[], out: (line: string) => void = (l) => void process.stdout.write(`${l}\n`)): Promise<number> {
  let values;
  try {
    values = parseArgs({
      args: [...argv],
      options: {
        socket: { type: "string" },
        "shm-size": { type: "string" },
        dialect: { type: "string", default: "upstream" },
        "screenshot-dir": { type: "string" },
        width: { type: "string", default: "640" },
        height: { type: "string", default: "480" },
        once: { type: "boolean", default: false },
        events: { type: "boolean", default: false },
        "mem-rw": { type: "boolean", default: false },
        "max-slots": { type: "string" },
        "sealed-memory": { type: "boolean", default: false },
        help: { type: "boolean", default: false },
        version: { type: "boolean", default: false },
      },
      strict: true,
    }).values;
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
  if (values.help) {
    out(USAGE);
    return 0;
  }
  if (values.version) {
    out(versionText());
    return 0;
  }
  if (values.socket === undefined) throw new UsageError("--socket PATH is required");
  const shmSize = values["shm-size"] === undefined ? DEFAULT_SHM_SIZE : parseSize(values["shm-size"], "--shm-size");
  if (!isPowerOfTwo(shmSize) || shmSize < 4096n) throw new UsageError(`--shm-size: 0x${shmSize.toString(16)} is not a power of two of at least 4 KiB`);
  const dialect = Dialects[values.dialect as DialectName];
  if (dialect === undefined) throw new UsageError(`--dialect: "${values.dialect}" is not one of ${Object.keys(Dialects).join(", ")}`);
  const width = Number(values.width);
  const height = Number(values.height);
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1 || width > 16384 || height > 16384)
    throw new UsageError("--width/--height: 1..16384");
  const events = values.events === true;
  const emit = (o: Record<string, unknown>): void => out(JSON.stringify(o));
  const dir = values["screenshot-dir"];
  const device: GpuDevice = new GpuDevice({
    shmSize,
    display: { width, height },
    ...(dir === undefined
      ? {}
      : {
          onFrame: screenshotWriter(dir, (file, f) =>
            emit({ event: "screenshot", file, scanout: f.scanoutId, resourceId: f.resourceId, width: f.width, height: f.height }),
          ),
        }),
    ...(events
      ? {
          onCommand: (e) => {
            const line: Record<string, unknown> = { event: "command", queue: e.queue, cmd: cmdName(e.type), resp: respName(e.resp) };
            if (e.resourceId !== undefined) line["resourceId"] = e.resourceId;
            if (e.ctxId !== undefined) line["ctxId"] = e.ctxId;
            if (e.capsetId !== undefined) line["capsetId"] = e.capsetId;
            if (e.message !== undefined) line["message"] = e.message;
            // The back-end's own view of a blob when the driver unmaps it: proves both sides shared the pages.
            const bytes = e.type === GpuCmd.RESOURCE_UNMAP_BLOB && e.resourceId !== undefined ? device.blobBytes(e.resourceId) : undefined;
            if (bytes !== undefined) line["blobSha256"] = createHash("sha256").update(bytes).digest("hex");
            emit(line);
          },
          onLifecycle: (e) => emit({ event: e }),
          onShmem: (e) => emit({ event: `shmem-${e.op}`, shmid: HOST_VISIBLE_SHMID, offset: `0x${e.offset.toString(16)}`, len: `0x${e.len.toString(16)}` }),
        }
      : {}),
  });
  const maxSlots = values["max-slots"] === undefined ? undefined : Number(values["max-slots"]);
  if (maxSlots !== undefined && (!Number.isInteger(maxSlots) || maxSlots < 1)) throw new UsageError("--max-slots: a positive integer");
  const server = serve(values.socket, device, {
    dialect,
    memRw: values["mem-rw"] === true,
    requireSealedMemory: values["sealed-memory"] === true,
    ...(maxSlots === undefined ? {} : { maxMemSlots: maxSlots }),
    ...(values.once ? { connections: 1 } : {}),
  });
  emit({ event: "listening", socket: server.path, shmid: HOST_VISIBLE_SHMID, shmSize: `0x${shmSize.toString(16)}`, dialect: dialect.name });
  const stop = (): void => void server.shutdown(); // graceful: running handlers finish, every fd closed, exit 0
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
  try {
    await server.done;
  } finally {
    process.off("SIGTERM", stop);
    process.off("SIGINT", stop);
  }
  return 0;
}
