/**
 * `vhost-user-device probe`: what a back-end is — features, protocol features, queues, memory
 * slots, config space and VIRTIO Shared Memory Regions.
 */
import { Command, Option } from "commander";
import { decodeBlkConfig, Guest, type DeviceInfo } from "@vhostkit/frontend";
import { addCommon, deviceOptions, parseInteger, type CommonFlags } from "../options.js";
import { bytesHex, hex, hexDump, json, table } from "../output.js";
import { DEVICE_TYPES, protocolFeatureNames, virtioFeatureNames, type DeviceType } from "../feature-names.js";

interface ProbeFlags extends CommonFlags {
  readonly deviceType: DeviceType;
  readonly configSize?: string;
}

/** The `--json` object: exactly these keys (issue 7). */
export function probeJson(info: DeviceInfo, deviceType: DeviceType): Record<string, unknown> {
  return {
    features: hex(info.features),
    featureNames: virtioFeatureNames(info.features, deviceType),
    protocolFeatures: hex(info.protocolFeatures),
    protocolFeatureNames: protocolFeatureNames(info.protocolFeatures, info.dialect),
    queueNum: info.queueNum,
    maxMemSlots: info.maxMemSlots ?? null,
    config: info.config === undefined ? null : bytesHex(info.config),
    shmem: info.shmem.map((r) => ({ shmid: r.shmid, size: hex(r.size) })),
    dialect: info.dialect.name,
  };
}

function human(info: DeviceInfo, socket: string, deviceType: DeviceType): string {
  const lines: string[] = [];
  lines.push(
    table([
      ["back-end", socket],
      ["dialect", info.dialect.name],
      ["features", hex(info.features)],
      ["protocol features", hex(info.protocolFeatures)],
      ["queues", String(info.queueNum)],
      ["max mem slots", info.maxMemSlots === undefined ? "-" : String(info.maxMemSlots)],
      ["config", info.config === undefined ? "-" : `${info.config.byteLength} bytes`],
      ["shared memory regions", String(info.shmem.length)],
    ]),
  );
  const bitRows = (bits: bigint, names: string[]): string[][] => {
    const rows: string[][] = [["  bit", "name"]];
    let k = 0;
    for (let i = 0n; i < 64n; i++) if ((bits >> i) & 1n) rows.push([`  ${i}`, names[k++] ?? ""]);
    return rows;
  };
  lines.push("", "features", table(bitRows(info.features, virtioFeatureNames(info.features, deviceType))));
  lines.push("", "protocol features", table(bitRows(info.protocolFeatures, protocolFeatureNames(info.protocolFeatures, info.dialect))));
  if (info.config !== undefined) {
    lines.push("", `config space (${info.config.byteLength} bytes)`, hexDump(info.config));
    if (deviceType === "blk") {
      const c = decodeBlkConfig(info.config);
      const rows: string[][] = [["  capacity", `${c.capacity} sectors (${c.capacity * 512n} bytes)`]];
      if (c.sizeMax !== undefined) rows.push(["  size_max", String(c.sizeMax)]);
      if (c.segMax !== undefined) rows.push(["  seg_max", String(c.segMax)]);
      if (c.blkSize !== undefined) rows.push(["  blk_size", String(c.blkSize)]);
      if (c.topology !== undefined) rows.push(["  min_io_size / opt_io_size", `${c.topology.minIoSize} / ${c.topology.optIoSize}`]);
      if (c.writeback !== undefined) rows.push(["  writeback", String(c.writeback)]);
      if (c.numQueues !== undefined) rows.push(["  num_queues", String(c.numQueues)]);
      if (c.discard !== undefined) rows.push(["  max_discard_sectors / seg", `${c.discard.maxSectors} / ${c.discard.maxSeg}`]);
      if (c.writeZeroes !== undefined) rows.push(["  max_write_zeroes_sectors / seg", `${c.writeZeroes.maxSectors} / ${c.writeZeroes.maxSeg}`]);
      lines.push("", "virtio-blk config", table(rows));
    }
    if (deviceType === "gpu" && info.config.byteLength >= 16) lines.push("", "virtio-gpu config", table(gpuConfigRows(info.config)));
  }
  lines.push("", "shared memory regions");
  if (info.shmem.length === 0) lines.push("  (none)");
  else lines.push(table([["  shmid", "size", "guest address"], ...info.shmem.map((r) => [`  ${r.shmid}`, hex(r.size), hex(r.guestPhysAddr)])]));
  return lines.join("\n");
}

/** virtio_gpu_config (docs/devices.md#gpu-configuration-space): events, scanouts, capsets, and blob_alignment when present. */
function gpuConfigRows(config: Uint8Array): string[][] {
  const v = new DataView(config.buffer, config.byteOffset, config.byteLength);
  const rows = [
    ["  events_read / events_clear", `0x${v.getUint32(0, true).toString(16)} / 0x${v.getUint32(4, true).toString(16)}`],
    ["  num_scanouts", String(v.getUint32(8, true))],
    ["  num_capsets", String(v.getUint32(12, true))],
  ];
  if (config.byteLength >= 20) rows.push(["  blob_alignment", String(v.getUint32(16, true))]);
  return rows;
}

/** Builds the `probe` subcommand. */
export function probeCommand(): Command {
  const cmd = new Command("probe").description("show what a back-end advertises: features, queues, config, shared memory regions");
  addCommon(cmd)
    .addOption(new Option("--device-type <type>", "decode feature bits and config for this device type").choices(DEVICE_TYPES).default("generic"))
    .option("--config-size <bytes>", "GET_CONFIG size (default: the largest the back-end accepts)")
    .action(async (flags: ProbeFlags) => {
      const opts = deviceOptions(flags);
      const configSize = flags.configSize === undefined ? undefined : parseInteger(flags.configSize, "--config-size", 1);
      const guest = new Guest();
      try {
        const device = await guest.addDevice({ ...opts, ...(configSize === undefined ? {} : { configSize }) });
        const info = device.info;
        await device.close();
        process.stdout.write(`${flags.json === true ? json(probeJson(info, flags.deviceType)) : human(info, flags.socket, flags.deviceType)}\n`);
      } finally {
        await guest.close();
      }
    });
  return cmd;
}
