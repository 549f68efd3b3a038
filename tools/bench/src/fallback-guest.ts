/**
 * The front-end's guest of the fallback benchmark, built the same way in the benchmark process and
 * in fallback-frontend.ts: 4 MiB of RAM and device A's shmid 1 (2 MiB, at 4 GiB, above RAM like a
 * BAR) with a 1 MiB memfd blob mapped read-write at offset 0.
 */
import { closeFd, dupCloexec, sealedMemfd } from "@vhostkit/transport/sys";
import { DeviceSharedMemory, GuestAddressSpace, GuestRam, SHMEM_MAP_FLAG_RW, guestAddress } from "@vhostkit/regions";

const MiB = 1n << 20n;
/** Where A's shmid 1 sits in guest-physical space. */
export const REGION_BASE = 1n << 32n;
/** The blob's size (mapped at offset 0 of the region). */
export const BLOB_LEN = MiB;

/** The guest; `blobFd` stays open for a second mapping of the blob; `dispose` releases all of it. */
export function frontEndGuest(): { space: GuestAddressSpace; blobFd: number; dispose: () => void } {
  const ram = new GuestRam({ blocks: [{ guestPhysAddr: 0n, size: 4n * MiB }] });
  const shm = new DeviceSharedMemory({ sizes: new Map([[1, 2n * MiB]]), guestPhysAddr: guestAddress(REGION_BASE) });
  const blobFd = sealedMemfd("bench-blob", BLOB_LEN);
  shm.map(1, 0n, BLOB_LEN, dupCloexec(blobFd), 0n, SHMEM_MAP_FLAG_RW);
  const space = new GuestAddressSpace(ram, [shm]);
  return { space, blobFd, dispose: () => (shm.dispose(), ram.dispose(), closeFd(blobFd)) };
}
