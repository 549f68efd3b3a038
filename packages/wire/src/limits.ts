/** Default maximum payload size in bytes (rust-vmm `MAX_MSG_SIZE`, docs/protocol.md#payload-size-limits). */
export const MAX_PAYLOAD_SIZE = 4096;
/** libvhost-user's payload cap in bytes (QEMU 7.2 back-ends): send no more than this to them. */
export const LIBVHOST_USER_MAX_PAYLOAD = 272;
/** Maximum number of fds attached to one message (VHOST_MEMORY_BASELINE_NREGIONS). */
export const MAX_FDS_PER_MSG = 8;
/** Maximum data bytes of one vhostkit MEM_READ/MEM_WRITE (docs/shmem.md#extension-wire-format). */
export const MEM_RW_MAX_DATA = 65536;
/** Fixed header of a MEM_READ/MEM_WRITE payload in bytes (guest_address u64, size u32, padding u32). */
export const MEM_RW_HEADER_SIZE = 16;
/** Largest MEM_READ/MEM_WRITE payload on the back-end channel when VHOSTKIT_MEM_RW is negotiated (16 + 65536). */
export const MEM_RW_MAX_PAYLOAD = MEM_RW_HEADER_SIZE + MEM_RW_MAX_DATA;
/** Number of VIRTIO Shared Memory Region ids (u8 shmid; GET_SHMEM_CONFIG array length). */
export const MAX_SHMEM_REGIONS = 256;
/** GET_SHMEM_CONFIG reply payload size in bytes: u32 nregions, u32 padding, 256 × u64. */
export const SHMEM_CONFIG_SIZE = 8 + 8 * MAX_SHMEM_REGIONS;
/** Maximum regions in a SET_MEM_TABLE payload that fits libvhost-user's cap. */
export const MAX_MEM_TABLE_REGIONS = 8;
/** Maximum config-space bytes accepted by libvhost-user in GET/SET_CONFIG. */
export const MAX_CONFIG_SIZE = 256;
/** Largest split virtqueue size (VIRTIO). */
export const MAX_VRING_SIZE = 32768;
