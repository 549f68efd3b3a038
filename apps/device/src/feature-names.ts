/**
 * Feature-bit name tables for output: virtio bits, device-specific bits per device type, and
 * dialect-aware protocol feature names.
 */
import { featureNames, VirtioFeature } from "@vhostkit/wire";
import { deviceType } from "./device-types.js";

/** Names of the virtio feature bits in `bits`; device bits by the type named `typeName` (else `bitN`). */
export function virtioFeatureNames(bits: bigint, typeName: string): string[] {
  return featureNames(bits, { ...VirtioFeature, ...(deviceType(typeName)?.features ?? {}) });
}

/** Names of protocol feature bits in `bits`; the dialect's SHMEM bit is called SHMEM. */
export { protocolFeatureNames } from "@vhostkit/wire";
