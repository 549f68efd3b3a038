/**
 * controlq's host blob commands (RESOURCE_BLOB negotiated): RESOURCE_CREATE_BLOB of memfd-backed
 * host blobs, RESOURCE_MAP_BLOB / RESOURCE_UNMAP_BLOB into and out of shared memory region shmid 1
 * through the front-end. Every offset and size the driver sends is checked; see the README for
 * the table.
 * @module
 */
import { isBackendError } from "@vhostkit/backend";
import { blobSeed, fillSeeded, VHOSTKIT_CAPSET_ID } from "../capset.js";
import { HostBlob } from "../host-blob.js";
import { BlobFlag, BlobMem, GpuFeature, GpuResp, MAP_INFO_SIZE, MapCache } from "../virtio-gpu.js";
import { check, GpuCommandError, response, type GpuEnv, type Handled, type Request } from "./command.js";
import type { ContextCommands } from "./contexts.js";
import { checkHostBytes, checkNewResourceId, ok, requireBlob } from "./resource-checks.js";

/** The host blob commands of controlq. */
export class BlobCommands {
  readonly #env: GpuEnv;
  readonly #contexts: ContextCommands;

  /** Blob commands over `env`; `contexts` finds the context a blob is created in (VIRGL). */
  constructor(env: GpuEnv, contexts: ContextCommands) {
    this.#env = env;
    this.#contexts = contexts;
  }

  /** RESOURCE_CREATE_BLOB: a host blob (memfd), zeroed or seeded from the context's blob id. */
  create(r: Request): Handled {
    const v = r.view;
    const id = v.getUint32(24, true);
    const blobMem = v.getUint32(28, true);
    const flags = v.getUint32(32, true);
    const n = v.getUint32(36, true);
    const size = v.getBigUint64(48, true);
    const env = this.#env;
    check((env.features() & GpuFeature.RESOURCE_BLOB) !== 0n, GpuResp.ERR_UNSPEC, "resource_create_blob: RESOURCE_BLOB was not negotiated");
    checkNewResourceId(env, id);
    check(
      blobMem === BlobMem.HOST3D,
      GpuResp.ERR_INVALID_PARAMETER,
      `resource_create_blob: blob_mem ${blobMem} unsupported (host blobs only: ${BlobMem.HOST3D})`,
    );
    check(
      (flags & ~(BlobFlag.USE_MAPPABLE | BlobFlag.USE_SHAREABLE | BlobFlag.USE_CROSS_DEVICE)) === 0,
      GpuResp.ERR_INVALID_PARAMETER,
      `resource_create_blob: unknown blob_flags 0x${flags.toString(16)}`,
    );
    check(n === 0, GpuResp.ERR_INVALID_PARAMETER, `resource_create_blob: a host blob takes no mem entries (got ${n})`);
    check(size > 0n, GpuResp.ERR_INVALID_PARAMETER, "resource_create_blob: size 0");
    // With VIRGL a host blob belongs to a context, which must be one of the vhostkit capset; without
    // it (the departure the README explains) ctx_id and blob_id are ignored and the blob is zeroed.
    let seed: number | undefined;
    if ((env.features() & GpuFeature.VIRGL) !== 0n) {
      const ctx = this.#contexts.context(r.hdr.ctxId, "resource_create_blob");
      check(
        ctx.capsetId === VHOSTKIT_CAPSET_ID,
        GpuResp.ERR_INVALID_PARAMETER,
        `resource_create_blob: context ${ctx.id} ${ctx.capsetId === 0 ? "has no capset" : `is of capset ${ctx.capsetId}`}; host blobs need capset ${VHOSTKIT_CAPSET_ID}`,
      );
      const blobId = v.getBigUint64(40, true);
      if (blobId !== 0n) seed = blobSeed(blobId);
    }
    const rounded = HostBlob.roundUp(size);
    check(
      rounded <= env.shmSize,
      GpuResp.ERR_OUT_OF_MEMORY,
      `resource_create_blob: 0x${size.toString(16)} bytes do not fit the 0x${env.shmSize.toString(16)}-byte shared memory region`,
    );
    checkHostBytes(env, rounded, `resource_create_blob ${id}`);
    const blob = HostBlob.tryCreate(`blob-${id}`, size);
    check(blob !== undefined, GpuResp.ERR_OUT_OF_MEMORY, `resource_create_blob: the host could not allocate 0x${rounded.toString(16)} bytes`);
    if (seed !== undefined) fillSeeded(blob.bytes, seed);
    env.state.resources.set(id, { kind: "blob", id, blobFlags: flags, size, blob, mapping: undefined });
    env.state.hostBytes += blob.size;
    return ok(r, id);
  }

  /** RESOURCE_MAP_BLOB: maps the blob into shmid 1 at the offset asked for (SHMEM_MAP). */
  async map(r: Request): Promise<Handled> {
    const v = r.view;
    const id = v.getUint32(24, true);
    const offset = v.getBigUint64(32, true);
    const env = this.#env;
    const res = requireBlob(env, id, "resource_map_blob");
    check((res.blobFlags & BlobFlag.USE_MAPPABLE) !== 0, GpuResp.ERR_INVALID_PARAMETER, `resource_map_blob: resource ${id} was not created USE_MAPPABLE`);
    check(
      res.mapping === undefined,
      GpuResp.ERR_INVALID_PARAMETER,
      `resource_map_blob: resource ${id} is already mapped at 0x${res.mapping?.offset.toString(16)}`,
    );
    check(
      offset % env.blobAlignment === 0n,
      GpuResp.ERR_INVALID_PARAMETER,
      `resource_map_blob: offset 0x${offset.toString(16)} not aligned to 0x${env.blobAlignment.toString(16)}`,
    );
    const len = res.blob.size;
    check(
      offset + len <= env.shmSize,
      GpuResp.ERR_INVALID_PARAMETER,
      `resource_map_blob: 0x${offset.toString(16)}+0x${len.toString(16)} exceeds the 0x${env.shmSize.toString(16)}-byte region`,
    );
    const clash = env.state.mappings().find((m) => offset < m.offset + m.len && m.offset < offset + len);
    check(
      clash === undefined,
      GpuResp.ERR_INVALID_PARAMETER,
      `resource_map_blob: 0x${offset.toString(16)}+0x${len.toString(16)} overlaps resource ${clash?.resourceId} at 0x${clash?.offset.toString(16)}+0x${clash?.len.toString(16)}`,
    );
    check(env.mapper.canMap(), GpuResp.ERR_UNSPEC, "resource_map_blob: the device is not running or SHMEM is not negotiated");
    res.mapping = { offset, len }; // reserve the range while the front-end maps it
    try {
      await env.mapper.map(offset, len, res.blob.fd);
    } catch (err) {
      if (isBackendError(err) && err.code === "ABANDONED" && env.state.resources.get(id) === res) {
        // Stopped while the map was on its way: the front-end may still apply it. Keep the range.
        res.mapping = { offset, len, uncertain: true };
        throw new GpuCommandError(
          GpuResp.ERR_UNSPEC,
          "resource_map_blob: the device stopped while mapping; the range stays reserved until RESOURCE_UNMAP_BLOB or a reset",
        );
      }
      res.mapping = undefined;
      throw new GpuCommandError(GpuResp.ERR_UNSPEC, `resource_map_blob: shmem_map failed: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (env.state.resources.get(id) !== res) {
      // Reset (or unref) while mapping: the front-end drops mappings on reset; nothing to record.
      res.mapping = undefined;
      throw new GpuCommandError(GpuResp.ERR_UNSPEC, "resource_map_blob: the resource went away while mapping");
    }
    const out = response(r.hdr, GpuResp.OK_MAP_INFO, MAP_INFO_SIZE);
    new DataView(out.buffer).setUint32(24, MapCache.CACHED, true);
    return { resp: out, resourceId: id };
  }

  /** RESOURCE_UNMAP_BLOB: unmaps it (SHMEM_UNMAP). */
  async unmap(r: Request): Promise<Handled> {
    const id = r.view.getUint32(24, true);
    const res = requireBlob(this.#env, id, "resource_unmap_blob");
    const m = res.mapping;
    check(m !== undefined, GpuResp.ERR_INVALID_PARAMETER, `resource_unmap_blob: resource ${id} is not mapped`);
    check(this.#env.mapper.canMap(), GpuResp.ERR_UNSPEC, "resource_unmap_blob: the device is not running");
    try {
      await this.#env.mapper.unmap(m.offset, m.len);
    } catch (err) {
      // An uncertain map the front-end never applied: its refusal settles it as unmapped.
      if (m.uncertain === true && isBackendError(err) && err.code === "REJECTED") {
        res.mapping = undefined;
        return ok(r, id);
      }
      throw new GpuCommandError(GpuResp.ERR_UNSPEC, `resource_unmap_blob: shmem_unmap failed: ${err instanceof Error ? err.message : String(err)}`);
    }
    res.mapping = undefined;
    return ok(r, id);
  }
}
