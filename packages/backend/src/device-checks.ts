/**
 * Validation of a {@link DeviceBackend} definition, before any front-end is served with it.
 * @module
 */
import { isValidQueueSize } from "@vhostkit/virtqueue";
import { MAX_VRING_SIZE, VirtioFeature } from "@vhostkit/wire";
import type { DeviceBackend, ShmemRegionSpec } from "./device-backend.js";
import { BackendError } from "./errors.js";

const PAGE = 4096n;

/**
 * Checks a device definition: queue count and size, feature bits, shared memory regions.
 * @internal
 * @returns the device's shared memory regions, validated (what GET_SHMEM_CONFIG answers).
 * @throws BackendError `BAD_DEVICE` when the device definition is invalid.
 */
export function checkDevice(d: DeviceBackend): readonly ShmemRegionSpec[] {
  const bad = (m: string) => new BackendError("BAD_DEVICE", `device: ${m}`);
  if (!Number.isInteger(d.queueCount) || d.queueCount < 1 || d.queueCount > 256) throw bad(`queueCount ${d.queueCount} not in 1..256`);
  if (!isValidQueueSize(d.maxQueueSize)) throw bad(`maxQueueSize ${d.maxQueueSize} is not a power of two <= ${MAX_VRING_SIZE}`);
  if (typeof d.features !== "bigint" || d.features < 0n || d.features >= 1n << 64n) throw bad("features must be a u64 bigint");
  // With ACCESS_PLATFORM ring and buffer addresses are IOVAs, translated through IOTLB_MSG, which
  // this framework does not implement (and MEM_READ/MEM_WRITE are defined on guest-physical
  // addresses only, docs/shmem.md#extension-rules, rule 1): offering it would mistranslate every address.
  if ((d.features & VirtioFeature.ACCESS_PLATFORM) !== 0n)
    throw bad("VIRTIO_F_ACCESS_PLATFORM (bit 33) needs IOTLB support, which @vhostkit/backend does not have");
  const seen = new Set<number>();
  const regions = [...(d.shmemRegions?.() ?? [])].map((r) => ({ shmid: r.shmid, size: r.size }));
  for (const r of regions) {
    if (!Number.isInteger(r.shmid) || r.shmid < 0 || r.shmid > 255 || seen.has(r.shmid)) throw bad(`shmid ${r.shmid} invalid or repeated`);
    if (typeof r.size !== "bigint" || r.size <= 0n || r.size % PAGE !== 0n)
      throw bad(`shmid ${r.shmid}: size 0x${r.size.toString(16)} is not a non-zero page multiple`);
    seen.add(r.shmid);
  }
  return regions;
}
