import { BackendRequest, FrontendRequest } from "./requests.js";

/** Name of a SHMEM dialect (docs/shmem.md#dialects). */
export type DialectName = "upstream" | "rust-vmm-0.16" | "draft" | "crosvm-legacy";

/**
 * How one connection spells the SHMEM feature (docs/shmem.md#dialects). A value passed per connection, never a
 * global switch. Outside SHMEM messages a dialect changes nothing.
 */
export interface Dialect {
  /** Dialect name. */
  readonly name: DialectName;
  /** Protocol feature mask that means SHMEM on this connection. */
  readonly shmemFeature: bigint;
  /** Front-end request id of the shared-memory config query (44, or crosvm's 1004). */
  readonly shmemConfigRequest: number;
  /** Back-end request id of the map request (9, or crosvm's 1000). */
  readonly shmemMapRequest: number;
  /** Back-end request id of the unmap request (10, or crosvm's 1001). */
  readonly shmemUnmapRequest: number;
  /** Payload layout family: `"mmap40"` (VhostUserMMap) or `"crosvm"` (32/24-byte legacy structs). */
  readonly layout: "mmap40" | "crosvm";
  /** True when MAP/UNMAP replies are mandatory regardless of REPLY_ACK (crosvm legacy). */
  readonly mandatoryShmemReplies: boolean;
}

/** Upstream final: SHMEM = bit 22, ids 44/9/10, 40-byte VhostUserMMap, REPLY_ACK rule. The default. */
export const UPSTREAM: Dialect = {
  name: "upstream",
  shmemFeature: 1n << 22n,
  shmemConfigRequest: FrontendRequest.GET_SHMEM_CONFIG,
  shmemMapRequest: BackendRequest.BACKEND_SHMEM_MAP,
  shmemUnmapRequest: BackendRequest.BACKEND_SHMEM_UNMAP,
  layout: "mmap40",
  mandatoryShmemReplies: false,
};

/** rust-vmm `vhost` 0.16: as upstream but SHMEM = bit 21. */
export const RUST_VMM_0_16: Dialect = { ...UPSTREAM, name: "rust-vmm-0.16", shmemFeature: 1n << 21n };

/** Pre-merge drafts (QEMU RFC to v11): as upstream but SHMEM = bit 20. */
export const DRAFT: Dialect = { ...UPSTREAM, name: "draft", shmemFeature: 1n << 20n };

/** crosvm before Dec 2025: bit 31, ids 1004/1000/1001, own layouts, mandatory replies. */
export const CROSVM_LEGACY: Dialect = {
  name: "crosvm-legacy",
  shmemFeature: 1n << 31n,
  shmemConfigRequest: FrontendRequest.GET_SHARED_MEMORY_REGIONS,
  shmemMapRequest: BackendRequest.CROSVM_SHMEM_MAP,
  shmemUnmapRequest: BackendRequest.CROSVM_SHMEM_UNMAP,
  layout: "crosvm",
  mandatoryShmemReplies: true,
};

/** All dialects by name. */
export const Dialects: Readonly<Record<DialectName, Dialect>> = {
  upstream: UPSTREAM,
  "rust-vmm-0.16": RUST_VMM_0_16,
  draft: DRAFT,
  "crosvm-legacy": CROSVM_LEGACY,
};
