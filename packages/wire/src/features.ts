import { UPSTREAM, type Dialect } from "./dialect.js";
/** VIRTIO feature bits relevant to vhost-user (docs/protocol.md#virtio-feature-bits), as single-bit bigint masks. */
export const VirtioFeature = {
  NOTIFY_ON_EMPTY: 1n << 24n,
  LOG_ALL: 1n << 26n,
  ANY_LAYOUT: 1n << 27n,
  INDIRECT_DESC: 1n << 28n,
  EVENT_IDX: 1n << 29n,
  /** VHOST_USER_F_PROTOCOL_FEATURES: GET/SET_PROTOCOL_FEATURES are valid. */
  PROTOCOL_FEATURES: 1n << 30n,
  VERSION_1: 1n << 32n,
  ACCESS_PLATFORM: 1n << 33n,
  RING_PACKED: 1n << 34n,
  IN_ORDER: 1n << 35n,
  ORDER_PLATFORM: 1n << 36n,
  SR_IOV: 1n << 37n,
  NOTIFICATION_DATA: 1n << 38n,
  NOTIF_CONFIG_DATA: 1n << 39n,
  RING_RESET: 1n << 40n,
  ADMIN_VQ: 1n << 41n,
  SUSPEND: 1n << 43n,
} as const;

/**
 * vhost-user protocol feature bits (docs/protocol.md#protocol-feature-bits, upstream numbering), as bigint masks.
 * SHMEM's bit depends on the dialect: use `Dialect.shmemFeature` on a connection.
 */
export const ProtocolFeature = {
  MQ: 1n << 0n,
  LOG_SHMFD: 1n << 1n,
  RARP: 1n << 2n,
  REPLY_ACK: 1n << 3n,
  NET_MTU: 1n << 4n,
  BACKEND_REQ: 1n << 5n,
  CROSS_ENDIAN: 1n << 6n,
  CRYPTO_SESSION: 1n << 7n,
  PAGEFAULT: 1n << 8n,
  CONFIG: 1n << 9n,
  BACKEND_SEND_FD: 1n << 10n,
  HOST_NOTIFIER: 1n << 11n,
  INFLIGHT_SHMFD: 1n << 12n,
  RESET_DEVICE: 1n << 13n,
  INBAND_NOTIFICATIONS: 1n << 14n,
  CONFIGURE_MEM_SLOTS: 1n << 15n,
  STATUS: 1n << 16n,
  XEN_MMAP: 1n << 17n,
  SHARED_OBJECT: 1n << 18n,
  DEVICE_STATE: 1n << 19n,
  GET_VRING_BASE_INFLIGHT: 1n << 20n,
  GPA_ADDRESSES: 1n << 21n,
  SHMEM: 1n << 22n,
  GET_VRING_BASE_SKIP_DRAIN: 1n << 23n,
} as const;

/** Default bit number of the vhostkit MEM_READ/MEM_WRITE gate (docs/shmem.md#extension-negotiation); configurable per connection. */
export const VHOSTKIT_MEM_RW_DEFAULT_BIT = 63;

/** Mask of the vhostkit MEM_RW gate for bit number `bit` (0–63; default 63). */
export function vhostkitMemRwFeature(bit: number = VHOSTKIT_MEM_RW_DEFAULT_BIT): bigint {
  if (!Number.isInteger(bit) || bit < 0 || bit > 63) throw new RangeError(`vhostkit mem rw bit ${bit} not in 0..63`);
  return 1n << BigInt(bit);
}

/** Default vhostkit MEM_RW mask: bit 63 (`0x8000_0000_0000_0000`). */
export const VHOSTKIT_MEM_RW = 1n << 63n;

/**
 * Mask of the vhostkit MEM_RW shared data buffer (revision 2 of the extension,
 * docs/shmem.md#shared-data-buffer-revision-2) for a MEM_RW gate at bit number `bit`: the bit just
 * below the gate (62 for the default 63); `0n` (no revision 2) for a gate below bit 33, so that the
 * buffer bit never lands among the low 32 bits upstream assigns.
 * @throws RangeError when `bit` is not in 0..63.
 */
export function vhostkitMemRwBufferFeature(bit: number = VHOSTKIT_MEM_RW_DEFAULT_BIT): bigint {
  const gate = vhostkitMemRwFeature(bit);
  return bit >= 33 ? gate >> 1n : 0n;
}

/**
 * Names of the bits of `bits` (u64) found in `table`; bits not in the table appear as `"bit<N>"`.
 * Ordered by bit number.
 */
export function featureNames(bits: bigint, table: Readonly<Record<string, bigint>>): string[] {
  const names: string[] = [];
  const byMask = new Map<bigint, string>();
  for (const [name, mask] of Object.entries(table)) if (!byMask.has(mask)) byMask.set(mask, name);
  for (let i = 0n; i < 64n; i++) {
    const m = 1n << i;
    if ((bits & m) !== 0n) names.push(byMask.get(m) ?? `bit${i}`);
  }
  return names;
}

/**
 * Names of the protocol feature bits of `bits` for a connection in `dialect`: the dialect's SHMEM
 * bit is called `SHMEM` (rust-vmm 0.16 puts it at bit 21, where upstream has GPA_ADDRESSES, and
 * the draft at bit 20), and upstream's SHMEM bit has no name in another dialect.
 */
export function protocolFeatureNames(bits: bigint, dialect: Dialect = UPSTREAM): string[] {
  const table: Record<string, bigint> = {};
  for (const [k, v] of Object.entries(ProtocolFeature)) if (v !== dialect.shmemFeature && k !== "SHMEM") table[k] = v;
  table["SHMEM"] = dialect.shmemFeature;
  return featureNames(bits, table);
}
