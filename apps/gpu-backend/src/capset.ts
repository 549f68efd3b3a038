/**
 * The sample's own capability set: what GET_CAPSET_INFO / GET_CAPSET report, and the one thing a
 * context created with it can do — own host blobs (HOST3D) that are mapped into shmid 1. The Linux
 * driver creates host-memory blobs only in a context created for a capset the device advertised
 * (`DRM_IOCTL_VIRTGPU_CONTEXT_INIT` checks the id against the capsets it read at probe time), so a
 * device with host-visible memory needs at least one. This one has no command stream: SUBMIT_3D and
 * the other rendering commands are refused (README, "Contexts and the vhostkit capset").
 * @module
 */

/**
 * Capset id of the vhostkit capset. Not one the VIRTIO specification assigns (1–6 are VIRGL,
 * VIRGL2, GFXSTREAM_VULKAN, VENUS, CROSS_DOMAIN, DRM); below 31 because Linux 6.1 builds its
 * capset mask with `1 << id` on an `int`.
 */
export const VHOSTKIT_CAPSET_ID = 30;

/** Highest (and only) version of the vhostkit capset. */
export const VHOSTKIT_CAPSET_VERSION = 1;

/** Size of the capset data, bytes. */
export const VHOSTKIT_CAPSET_SIZE = 16;

/** The first 8 bytes of the capset data. */
export const VHOSTKIT_CAPSET_MAGIC = "VHOSTKIT";

/** Capset flag: HOST3D blobs of a context of this capset can be mapped into shmid 1. */
export const CAPSET_FLAG_HOST_BLOBS = 0x1;

/** Capset flag: a non-zero `blob_id` fills a new host blob with {@link seedWord} (else it is zeroed). */
export const CAPSET_FLAG_BLOB_SEED = 0x2;

/**
 * The capset data (version 1, 16 bytes, little-endian): "VHOSTKIT", u32 version, u32 flags
 * ({@link CAPSET_FLAG_HOST_BLOBS} | {@link CAPSET_FLAG_BLOB_SEED}).
 */
export function vhostkitCapset(): Uint8Array {
  const out = new Uint8Array(VHOSTKIT_CAPSET_SIZE);
  out.set(new TextEncoder().encode(VHOSTKIT_CAPSET_MAGIC), 0);
  const v = new DataView(out.buffer);
  v.setUint32(8, VHOSTKIT_CAPSET_VERSION, true);
  v.setUint32(12, CAPSET_FLAG_HOST_BLOBS | CAPSET_FLAG_BLOB_SEED, true);
  return out;
}

/** The 32-bit seed of a `blob_id`: its low half XOR its high half. */
export function blobSeed(blobId: bigint): number {
  return Number((blobId & 0xffff_ffffn) ^ ((blobId >> 32n) & 0xffff_ffffn));
}

/** Word `i` (u32, little-endian, at byte 4 × i) of a blob seeded with `seed`: `seed + i × 0x9E3779B9` mod 2³². */
export function seedWord(seed: number, i: number): number {
  return (seed + Math.imul(i, 0x9e3779b9)) >>> 0;
}

/** Fills `bytes` (a multiple of 4 long) with the words of `seed`. */
export function fillSeeded(bytes: Uint8Array, seed: number): void {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i < bytes.byteLength >>> 2; i++) v.setUint32(i * 4, seedWord(seed, i), true);
}
