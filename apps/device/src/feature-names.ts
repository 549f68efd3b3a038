/**
 * Feature-bit name tables for output: virtio bits, device-specific bits per device type, and
 * dialect-aware protocol feature names.
 */
import { featureNames, VirtioFeature } from "@vhostkit/wire";
import { BlkFeature } from "@vhostkit/frontend";
import { GpuFeature } from "./gpu/protocol.js";

/** Device types whose config and feature bits the CLI can decode. */
export const DEVICE_TYPES = ["generic", "blk", "rng", "gpu"] as const;

/** One of {@link DEVICE_TYPES}. */
export type DeviceType = (typeof DEVICE_TYPES)[number];

/** Names of the virtio feature bits in `bits`; device bits by `deviceType` (else `bitN`). */
export function virtioFeatureNames(bits: bigint, deviceType: DeviceType): string[] {
  const table: Record<string, bigint> = { ...VirtioFeature };
  if (deviceType === "blk") Object.assign(table, BlkFeature);
  if (deviceType === "gpu") Object.assign(table, GpuFeature);
  return featureNames(bits, table);
}

/** Names of protocol feature bits in `bits`; the dialect's SHMEM bit is called SHMEM. */
export { protocolFeatureNames } from "@vhostkit/wire";
