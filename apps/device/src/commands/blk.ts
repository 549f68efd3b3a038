/**
 * `vhost-user-device blk`: read, write, flush or identify a virtio-blk back-end, or run a verifying
 * workload against it (`blk-workload.ts`).
 */
import { readFile, writeFile } from "node:fs/promises";
import { Command } from "commander";
import { BlkDriver, Guest, SECTOR_SIZE } from "@vhostkit/frontend";
import { addCommon, deviceOptions, parseInteger, UsageError, type CommonFlags } from "../options.js";
import { json, table } from "../output.js";
import { runWorkload } from "./blk-workload.js";

interface BlkFlags extends CommonFlags {
  readonly read?: string;
  readonly out?: string;
  readonly write?: string;
  readonly in?: string;
  readonly flush?: boolean;
  readonly id?: boolean;
  readonly workload?: string;
  readonly qd: string;
  readonly writeRatio: string;
  readonly reconnect?: boolean;
  readonly spanMib: string;
}

type Op =
  | { kind: "read"; sector: bigint; count: number; out: string }
  | { kind: "write"; sector: bigint; input: string }
  | { kind: "flush" }
  | { kind: "id" }
  | { kind: "workload"; seconds: number };

function sector(v: string, what: string): bigint {
  if (!/^\d+$/.test(v)) throw new UsageError(`${what}: "${v}" is not a sector number`);
  const n = BigInt(v);
  if (n >= 1n << 64n) throw new UsageError(`${what}: sector ${v} does not fit virtio-blk's u64 sector field`);
  return n;
}

/** A sector for `--json`: a number when exact (below 2^53), else its decimal string. */
function jsonSector(s: bigint): number | string {
  return s <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(s) : s.toString();
}

/** Turns the flags into exactly one operation. @throws UsageError. */
function operation(f: BlkFlags): Op {
  const chosen = [f.read !== undefined, f.write !== undefined, f.flush === true, f.id === true, f.workload !== undefined].filter(Boolean).length;
  if (chosen !== 1) throw new UsageError("blk: give exactly one of --read, --write, --flush, --id, --workload");
  if (f.workload !== undefined) return { kind: "workload", seconds: parseInteger(f.workload, "--workload", 1) };
  if (f.reconnect === true) throw new UsageError("blk: --reconnect goes with --workload");
  if (f.read !== undefined) {
    if (f.out === undefined) throw new UsageError("blk --read needs --out FILE");
    const [s, c] = f.read.split(":");
    return { kind: "read", sector: sector(s ?? "", "--read"), count: c === undefined ? 1 : parseInteger(c, "--read COUNT", 1), out: f.out };
  }
  if (f.write !== undefined) {
    if (f.in === undefined) throw new UsageError("blk --write needs --in FILE");
    return { kind: "write", sector: sector(f.write, "--write"), input: f.in };
  }
  if (f.out !== undefined || f.in !== undefined) throw new UsageError("blk: --out goes with --read, --in with --write");
  return f.flush === true ? { kind: "flush" } : { kind: "id" };
}

/** Builds the `blk` subcommand. */
export function blkCommand(): Command {
  const cmd = new Command("blk").description(
    "virtio-blk requests: --read SECTOR[:COUNT] --out FILE | --write SECTOR --in FILE | --flush | --id | --workload SECONDS [--qd N] [--write-ratio R] [--reconnect]",
  );
  addCommon(cmd)
    .option("--read <sector[:count]>", "read COUNT (default 1) 512-byte sectors from SECTOR")
    .option("--out <file>", "file to write the data read to")
    .option("--write <sector>", "write the input file at SECTOR")
    .option("--in <file>", "file to write (a multiple of 512 bytes)")
    .option("--flush", "flush the write cache")
    .option("--id", "print the device id (GET_ID)")
    .option("--workload <seconds>", "write patterns and read them back, verifying every byte, for SECONDS; a progress line each second; exit 1 on a mismatch")
    .option("--qd <n>", "--workload: requests in flight", "32")
    .option("--write-ratio <r>", "--workload: fraction of requests that are writes (0..1)", "0.5")
    .option("--span-mib <n>", "--workload: MiB of the disk used, from sector 0", "64")
    .option("--reconnect", "--workload: reconnect when the back-end restarts (INFLIGHT_SHMFD when offered)")
    .action(async (flags: BlkFlags) => {
      const op = operation(flags);
      const opts = deviceOptions(flags);
      if (op.kind === "workload") {
        const writeRatio = Number(flags.writeRatio);
        if (!(writeRatio >= 0 && writeRatio <= 1)) throw new UsageError(`--write-ratio: "${flags.writeRatio}" is not a number in 0..1`);
        const say = (line: string): void => void process.stdout.write(`${line}\n`);
        const o = {
          seconds: op.seconds,
          qd: parseInteger(flags.qd, "--qd", 1),
          writeRatio,
          reconnect: flags.reconnect === true,
          spanBytes: parseInteger(flags.spanMib, "--span-mib", 1) * 1024 * 1024,
          json: flags.json === true,
        };
        await runWorkload(opts, o, say);
        return;
      }
      let data: Uint8Array | undefined;
      if (op.kind === "write") {
        data = new Uint8Array(
          await readFile(op.input).catch((e: unknown) => Promise.reject(new UsageError(`--in: ${e instanceof Error ? e.message : String(e)}`))),
        );
        if (data.byteLength === 0 || data.byteLength % SECTOR_SIZE !== 0)
          throw new UsageError(`--in: ${data.byteLength} bytes is not a positive multiple of ${SECTOR_SIZE}`);
      }
      const guest = new Guest();
      try {
        const device = await guest.addDevice(opts);
        const blk = await BlkDriver.attach(device);
        let result: Record<string, unknown>;
        switch (op.kind) {
          case "read": {
            const bytes = await blk.read(op.sector, op.count);
            await writeFile(op.out, bytes);
            result = { op: "read", sector: jsonSector(op.sector), count: op.count, bytes: bytes.byteLength, out: op.out };
            break;
          }
          case "write": {
            await blk.write(op.sector, data as Uint8Array);
            result = {
              op: "write",
              sector: jsonSector(op.sector),
              count: (data as Uint8Array).byteLength / SECTOR_SIZE,
              bytes: (data as Uint8Array).byteLength,
            };
            break;
          }
          case "flush":
            await blk.flush();
            result = { op: "flush" };
            break;
          case "id":
            result = { op: "id", id: await blk.getId() };
            break;
          default:
            throw new UsageError("blk: unknown operation");
        }
        await device.close();
        if (flags.json === true) process.stdout.write(`${json(result)}\n`);
        else process.stdout.write(`${table(Object.entries(result).map(([k, v]) => [k, String(v)]))}\n`);
      } finally {
        await guest.close();
      }
    });
  return cmd;
}
