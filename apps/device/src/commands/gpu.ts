/**
 * `vhost-user-device gpu`: drive a virtio-gpu-like back-end (apps/gpu-backend's vhostkit-gpu):
 * display info, a 2D resource backed by guest RAM, a host blob mapped into shmid 1 and read and
 * written through the shared memory region, a blob-backed scanout + flush, a cursor, unmap.
 */
import { Command } from "commander";
import { Guest } from "@vhostkit/frontend";
import { runGpuSession } from "../gpu/session.js";
import { addCommon, deviceOptions, type CommonFlags } from "../options.js";
import { json, table } from "../output.js";

interface GpuFlags extends CommonFlags {
  readonly screenshot?: string;
}

function human(s: Record<string, unknown>, socket: string): string {
  const shmem = s["shmem"] as { shmid: number; size: string; guestPhysAddr: string }[];
  const blob = s["blob"] as Record<string, unknown>;
  const display = s["display"] as { width: number; height: number };
  const maps = s["mappings"] as { whileMapped: { shmid: number; shmOffset: string; len: string; guestPhysAddr: string }[]; afterUnmap: unknown[] };
  const rows: string[][] = [
    ["back-end", socket],
    ["dialect", String(s["dialect"])],
    ["shared memory regions", shmem.map((r) => `shmid ${r.shmid}: ${r.size} bytes at ${r.guestPhysAddr}`).join("; ")],
    ["display", `${display.width}x${display.height}`],
    ["2D resource", `id 1, backing in guest RAM`],
    ["blob", `id ${blob["id"]}, ${blob["size"]} bytes, mapped at ${blob["mapOffset"]} of shmid 1 (map_info ${blob["mapInfo"]})`],
    ["live mapping", maps.whileMapped.map((m) => `shmid ${m.shmid} ${m.shmOffset}+${m.len} at ${m.guestPhysAddr}`).join("; ")],
    [
      "round trip",
      `${(blob["roundTrip"] as { bytes: number; ok: boolean }).bytes} bytes written and read back through the region: ${(blob["roundTrip"] as { ok: boolean }).ok ? "ok" : "MISMATCH"}`,
    ],
    ["blob scanout", `scene drawn through the region, flushed; sha256 ${blob["sha256"]}`],
    ["after unmap", `${maps.afterUnmap.length} live mappings`],
    ["commands", `${s["commands"]} sent, ${s["errors"]} refused`],
    ["screenshot", s["screenshot"] === null ? "-" : String(s["screenshot"])],
  ];
  return table(rows);
}

/** Builds the `gpu` subcommand. */
export function gpuCommand(): Command {
  const cmd = new Command("gpu").description(
    "drive a virtio-gpu-like back-end: display info, 2D resource, host blob mapped through shared memory, scanout, flush",
  );
  addCommon(cmd)
    .option("--screenshot <file>", "write a PNG of the blob-backed scanout, read back through the shared memory region")
    .action(async (flags: GpuFlags) => {
      const guest = new Guest();
      try {
        const device = await guest.addDevice(deviceOptions(flags));
        const summary = await runGpuSession(guest, device, flags.screenshot === undefined ? {} : { screenshot: flags.screenshot });
        await device.close();
        process.stdout.write(`${flags.json === true ? json(summary) : human(summary, flags.socket)}\n`);
      } finally {
        await guest.close();
      }
    });
  return cmd;
}
