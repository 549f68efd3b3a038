/**
 * The virtio device types `--device-type` names (docs/devices.md#device-ids-and-config-layouts):
 * each with its device id, its device-specific feature bits where the CLI knows them, and its
 * config space layout, from which {@link decodeConfig} prints the fields a config holds (a field
 * past the end of what the back-end returned is left out).
 */
import { BlkFeature } from "@vhostkit/frontend";
import { GpuFeature } from "./gpu/protocol.js";

/** How a config field is read (little-endian), or a formatter of its bytes. */
type FieldType = "u8" | "u16" | "u32" | "u64" | "mac" | { readonly text: number } | { readonly bytes: number };

/** One config field: name, byte offset, type, and an optional unit or note after the value. */
type Field = readonly [name: string, offset: number, type: FieldType, suffix?: (value: bigint) => string];

/** A virtio device type. */
export interface VirtioDeviceType {
  /** The name `--device-type` takes. */
  readonly name: string;
  /** Device id (VIRTIO specification, device types). */
  readonly id: number;
  /** What it is. */
  readonly title: string;
  /** Device-specific feature bits (masks) by name, where known. */
  readonly features?: Readonly<Record<string, bigint>>;
  /** Config space fields in offset order (empty: the type has no config). */
  readonly config: readonly Field[];
}

const sectors = (v: bigint): string => ` sectors (${v * 512n} bytes)`;

/** The device types, by device id. */
export const VIRTIO_DEVICE_TYPES: readonly VirtioDeviceType[] = [
  {
    name: "net",
    id: 1,
    title: "network card",
    config: [
      ["mac", 0, "mac"],
      ["status", 6, "u16"],
      ["max_virtqueue_pairs", 8, "u16"],
      ["mtu", 10, "u16"],
      ["speed", 12, "u32"],
      ["duplex", 16, "u8"],
      ["rss_max_key_size", 17, "u8"],
      ["rss_max_indirection_table_length", 18, "u16"],
      ["supported_hash_types", 20, "u32"],
    ],
  },
  {
    name: "blk",
    id: 2,
    title: "block device",
    features: BlkFeature,
    config: [
      ["capacity", 0, "u64", sectors],
      ["size_max", 8, "u32"],
      ["seg_max", 12, "u32"],
      ["geometry.cylinders", 16, "u16"],
      ["geometry.heads", 18, "u8"],
      ["geometry.sectors", 19, "u8"],
      ["blk_size", 20, "u32"],
      ["physical_block_exp", 24, "u8"],
      ["alignment_offset", 25, "u8"],
      ["min_io_size", 26, "u16"],
      ["opt_io_size", 28, "u32"],
      ["writeback", 32, "u8"],
      ["num_queues", 34, "u16"],
      ["max_discard_sectors", 36, "u32"],
      ["max_discard_seg", 40, "u32"],
      ["discard_sector_alignment", 44, "u32"],
      ["max_write_zeroes_sectors", 48, "u32"],
      ["max_write_zeroes_seg", 52, "u32"],
      ["write_zeroes_may_unmap", 56, "u8"],
    ],
  },
  {
    name: "console",
    id: 3,
    title: "console",
    config: [
      ["cols", 0, "u16"],
      ["rows", 2, "u16"],
      ["max_nr_ports", 4, "u32"],
      ["emerg_wr", 8, "u32"],
    ],
  },
  { name: "rng", id: 4, title: "entropy source", config: [] },
  {
    name: "balloon",
    id: 5,
    title: "memory balloon",
    config: [
      ["num_pages", 0, "u32"],
      ["actual", 4, "u32"],
      ["free_page_hint_cmd_id", 8, "u32"],
      ["poison_val", 12, "u32"],
    ],
  },
  {
    name: "scsi",
    id: 8,
    title: "SCSI host",
    config: [
      ["num_queues", 0, "u32"],
      ["seg_max", 4, "u32"],
      ["max_sectors", 8, "u32"],
      ["cmd_per_lun", 12, "u32"],
      ["event_info_size", 16, "u32"],
      ["sense_size", 20, "u32"],
      ["cdb_size", 24, "u32"],
      ["max_channel", 28, "u16"],
      ["max_target", 30, "u16"],
      ["max_lun", 32, "u32"],
    ],
  },
  {
    name: "9p",
    id: 9,
    title: "9P transport",
    config: [
      ["tag_len", 0, "u16"],
      ["tag", 2, { text: 64 }],
    ],
  },
  {
    name: "gpu",
    id: 16,
    title: "GPU",
    features: GpuFeature,
    config: [
      ["events_read", 0, "u32"],
      ["events_clear", 4, "u32"],
      ["num_scanouts", 8, "u32"],
      ["num_capsets", 12, "u32"],
      ["blob_alignment", 16, "u32"],
    ],
  },
  {
    name: "input",
    id: 18,
    title: "input device",
    config: [
      ["select", 0, "u8"],
      ["subsel", 1, "u8"],
      ["size", 2, "u8"],
      ["u", 8, { bytes: 128 }],
    ],
  },
  { name: "vsock", id: 19, title: "socket device", features: { STREAM: 1n << 0n, SEQPACKET: 1n << 1n }, config: [["guest_cid", 0, "u64"]] },
  {
    name: "crypto",
    id: 20,
    title: "crypto device",
    config: [
      ["status", 0, "u32"],
      ["max_dataqueues", 4, "u32"],
      ["crypto_services", 8, "u32"],
      ["cipher_algo_l", 12, "u32"],
      ["cipher_algo_h", 16, "u32"],
      ["hash_algo", 20, "u32"],
      ["mac_algo_l", 24, "u32"],
      ["mac_algo_h", 28, "u32"],
      ["aead_algo", 32, "u32"],
      ["max_cipher_key_len", 36, "u32"],
      ["max_auth_key_len", 40, "u32"],
      ["akcipher_algo", 44, "u32"],
      ["max_size", 48, "u64"],
    ],
  },
  {
    name: "iommu",
    id: 23,
    title: "IOMMU",
    config: [
      ["page_size_mask", 0, "u64"],
      ["input_range.start", 8, "u64"],
      ["input_range.end", 16, "u64"],
      ["domain_range.start", 24, "u32"],
      ["domain_range.end", 28, "u32"],
      ["probe_size", 32, "u32"],
      ["bypass", 36, "u8"],
    ],
  },
  {
    name: "sound",
    id: 25,
    title: "sound device",
    config: [
      ["jacks", 0, "u32"],
      ["streams", 4, "u32"],
      ["chmaps", 8, "u32"],
      ["controls", 12, "u32"],
    ],
  },
  {
    name: "fs",
    id: 26,
    title: "file system device",
    features: { NOTIFICATION: 1n << 0n },
    config: [
      ["tag", 0, { text: 36 }],
      ["num_request_queues", 36, "u32"],
      ["notify_buf_size", 40, "u32"],
    ],
  },
  {
    name: "pmem",
    id: 27,
    title: "PMEM device",
    config: [
      ["start", 0, "u64"],
      ["size", 8, "u64"],
    ],
  },
  { name: "scmi", id: 32, title: "SCMI device", config: [] },
  { name: "i2c", id: 34, title: "I2C adapter", config: [["default_size", 0, "u16"]] },
  { name: "can", id: 36, title: "CAN device", config: [["status", 0, "u16"]] },
  {
    name: "gpio",
    id: 41,
    title: "GPIO device",
    config: [
      ["ngpio", 0, "u16"],
      ["gpio_names_size", 4, "u32"],
    ],
  },
  {
    name: "media",
    id: 48,
    title: "media device",
    config: [
      ["device_caps", 0, "u32"],
      ["device_type", 4, "u32"],
      ["card", 8, { text: 32 }],
    ],
  },
];

/** The `--device-type` names: `generic` (no device-specific decoding) and every type's name. */
export const DEVICE_TYPE_NAMES: readonly string[] = ["generic", ...VIRTIO_DEVICE_TYPES.map((t) => t.name)];

/** The type named `name`, or `undefined` for `generic` and unknown names. */
export function deviceType(name: string): VirtioDeviceType | undefined {
  return VIRTIO_DEVICE_TYPES.find((t) => t.name === name);
}

function fieldSize(t: FieldType): number {
  if (typeof t === "object") return "text" in t ? t.text : t.bytes;
  return { u8: 1, u16: 2, u32: 4, u64: 8, mac: 6 }[t];
}

/**
 * The fields of `config` that a `type` config holds, as `[name, value]` rows; fields the returned
 * bytes do not cover are left out, so a short config shows what it has.
 */
export function decodeConfig(type: VirtioDeviceType, config: Uint8Array): [string, string][] {
  const v = new DataView(config.buffer, config.byteOffset, config.byteLength);
  const rows: [string, string][] = [];
  for (const [name, offset, t, suffix] of type.config) {
    if (offset + fieldSize(t) > config.byteLength) continue;
    let n: bigint | undefined;
    let text: string;
    if (t === "mac") text = [...config.subarray(offset, offset + 6)].map((b) => b.toString(16).padStart(2, "0")).join(":");
    else if (typeof t === "object" && "text" in t) {
      const raw = config.subarray(offset, offset + t.text);
      const end = raw.indexOf(0);
      text = JSON.stringify(new TextDecoder().decode(raw.subarray(0, end < 0 ? raw.length : end)));
    } else if (typeof t === "object") text = Buffer.from(config.subarray(offset, offset + t.bytes)).toString("hex");
    else {
      n =
        t === "u8"
          ? BigInt(v.getUint8(offset))
          : t === "u16"
            ? BigInt(v.getUint16(offset, true))
            : t === "u32"
              ? BigInt(v.getUint32(offset, true))
              : v.getBigUint64(offset, true);
      text = n.toString();
    }
    rows.push([name, n !== undefined && suffix !== undefined ? `${text}${suffix(n)}` : text]);
  }
  return rows;
}
