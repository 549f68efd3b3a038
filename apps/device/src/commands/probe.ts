/**
 * `vhost-user-device probe`: what a back-end is — features, protocol features, queues, memory
 * slots, config space (its size found by the front-end unless given) and VIRTIO Shared Memory
 * Regions. A back-end without CONFIG, or one that refuses or fails GET_CONFIG, is reported as such;
 * the probe still succeeds.
 */
import { Command, Option } from "commander";
import { isFrontendError, SUPPORTED_PROTOCOL_FEATURES, type DeviceInfo, type DeviceOptions } from "@vhostkit/frontend";
import { Dialects, ProtocolFeature } from "@vhostkit/wire";
import { withDevice } from "../device-session.js";
import { decodeConfig, DEVICE_TYPE_NAMES, deviceType } from "../device-types.js";
import { protocolFeatureNames, virtioFeatureNames } from "../feature-names.js";
import { addCommon, deviceOptions, parseInteger, type CommonFlags } from "../options.js";
import { bytesHex, hex, hexDump, json, table } from "../output.js";

interface ProbeFlags extends CommonFlags {
  readonly deviceType: string;
  readonly configSize?: string;
}

/**
 * How the config space was read: `read` (the size given with `--config-size`), `discovered` (the
 * largest size the back-end accepts, found by asking 256 bytes and searching down), `not offered`
 * (no CONFIG protocol feature), `refused` (every size refused), or `failed: ...` (GET_CONFIG broke
 * the connection; probed again without CONFIG).
 */
export type ConfigStatus = "read" | "discovered" | "not offered" | "refused" | `failed: ${string}`;

/** What probe found: the device info and how its config was read. */
export interface ProbeResult {
  readonly info: DeviceInfo;
  readonly configStatus: ConfigStatus;
}

/** The `--json` object: exactly these keys (issue 7, plus `configStatus` and `configFields` of issue 16). */
export function probeJson(r: ProbeResult, typeName: string): Record<string, unknown> {
  const { info } = r;
  const type = deviceType(typeName);
  return {
    features: hex(info.features),
    featureNames: virtioFeatureNames(info.features, typeName),
    protocolFeatures: hex(info.protocolFeatures),
    protocolFeatureNames: protocolFeatureNames(info.protocolFeatures, info.dialect),
    queueNum: info.queueNum,
    maxMemSlots: info.maxMemSlots ?? null,
    config: info.config === undefined ? null : bytesHex(info.config),
    configStatus: r.configStatus,
    configFields: type === undefined || info.config === undefined ? null : Object.fromEntries(decodeConfig(type, info.config)),
    shmem: info.shmem.map((s) => ({ shmid: s.shmid, size: hex(s.size) })),
    dialect: info.dialect.name,
  };
}

function configSummary(r: ProbeResult): string {
  const n = r.info.config?.byteLength;
  switch (r.configStatus) {
    case "read":
      return `${n} bytes`;
    case "discovered":
      return `${n} bytes (the largest read the back-end accepts)`;
    case "not offered":
      return "- (the back-end does not offer CONFIG)";
    case "refused":
      return "- (the back-end refuses GET_CONFIG of every size)";
    default:
      return `- (GET_CONFIG ${r.configStatus}; probed again without CONFIG)`;
  }
}

function human(r: ProbeResult, socket: string, typeName: string): string {
  const { info } = r;
  const lines: string[] = [];
  lines.push(
    table([
      ["back-end", socket],
      ["dialect", info.dialect.name],
      ["features", hex(info.features)],
      ["protocol features", hex(info.protocolFeatures)],
      ["queues", String(info.queueNum)],
      ["max mem slots", info.maxMemSlots === undefined ? "-" : String(info.maxMemSlots)],
      ["config", configSummary(r)],
      ["shared memory regions", String(info.shmem.length)],
    ]),
  );
  const bitRows = (bits: bigint, names: string[]): string[][] => {
    const rows: string[][] = [["  bit", "name"]];
    let k = 0;
    for (let i = 0n; i < 64n; i++) if ((bits >> i) & 1n) rows.push([`  ${i}`, names[k++] ?? ""]);
    return rows;
  };
  lines.push("", "features", table(bitRows(info.features, virtioFeatureNames(info.features, typeName))));
  lines.push("", "protocol features", table(bitRows(info.protocolFeatures, protocolFeatureNames(info.protocolFeatures, info.dialect))));
  const type = deviceType(typeName);
  if (info.config !== undefined) {
    lines.push("", `config space (${info.config.byteLength} bytes)`, hexDump(info.config));
    if (type !== undefined)
      lines.push(
        "",
        `virtio-${type.name} config (device id ${type.id})`,
        type.config.length === 0 ? "  (the type has no config fields)" : table(decodeConfig(type, info.config).map(([k, v]) => [`  ${k}`, v])),
      );
  }
  lines.push("", "shared memory regions");
  if (info.shmem.length === 0) lines.push("  (none)");
  else lines.push(table([["  shmid", "size", "guest address"], ...info.shmem.map((s) => [`  ${s.shmid}`, hex(s.size), hex(s.guestPhysAddr)])]));
  return lines.join("\n");
}

/**
 * Negotiates and returns what the back-end advertised. A back-end that breaks the connection on
 * GET_CONFIG (rather than refusing) is asked again without CONFIG, so that the rest is still probed.
 * @throws FrontendError from negotiation for anything else.
 */
export async function probe(opts: DeviceOptions, configSize: number | undefined): Promise<ProbeResult> {
  const read = (o: DeviceOptions) => withDevice(o, async (device) => device.info);
  let info: DeviceInfo;
  let failed: string | undefined;
  try {
    info = await read({ ...opts, ...(configSize === undefined ? {} : { configSize }) });
  } catch (err) {
    if (configSize !== undefined || !isFrontendError(err) || err.detail.request !== "GET_CONFIG") throw err;
    failed = err.message;
    const dialect = typeof opts.dialect === "string" ? Dialects[opts.dialect] : (opts.dialect ?? Dialects.upstream);
    info = await read({ ...opts, protocolFeatures: (SUPPORTED_PROTOCOL_FEATURES | dialect.shmemFeature) & ~ProtocolFeature.CONFIG });
  }
  const configStatus: ConfigStatus =
    failed !== undefined
      ? `failed: ${failed}`
      : (info.ackedProtocolFeatures & ProtocolFeature.CONFIG) === 0n
        ? "not offered"
        : info.config === undefined
          ? "refused"
          : configSize === undefined
            ? "discovered"
            : "read";
  return { info, configStatus };
}

/** Builds the `probe` subcommand. */
export function probeCommand(): Command {
  const cmd = new Command("probe").description(
    "show what a back-end advertises: features, queues, config (its size found unless given), shared memory regions",
  );
  addCommon(cmd)
    .addOption(
      new Option("--device-type <type>", "decode device feature bits and config fields for this virtio device type")
        .choices([...DEVICE_TYPE_NAMES])
        .default("generic"),
    )
    .option("--config-size <bytes>", "GET_CONFIG size (default: the largest the back-end accepts, found by searching down from 256)")
    .action(async (flags: ProbeFlags) => {
      const configSize = flags.configSize === undefined ? undefined : parseInteger(flags.configSize, "--config-size", 1);
      const r = await probe(deviceOptions(flags), configSize);
      process.stdout.write(`${flags.json === true ? json(probeJson(r, flags.deviceType)) : human(r, flags.socket, flags.deviceType)}\n`);
    });
  return cmd;
}
