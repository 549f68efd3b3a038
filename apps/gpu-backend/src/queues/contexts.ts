/**
 * controlq's capset and context commands (VIRGL negotiated): GET_CAPSET_INFO / GET_CAPSET for the
 * one vhostkit capset, CTX_CREATE / CTX_DESTROY / CTX_ATTACH_RESOURCE / CTX_DETACH_RESOURCE as
 * bookkeeping, and an error response for every rendering command (the capset has no command
 * stream). Every id and length the driver sends is checked; see the README for the table.
 * @module
 */
import { VHOSTKIT_CAPSET_ID, VHOSTKIT_CAPSET_SIZE, VHOSTKIT_CAPSET_VERSION, vhostkitCapset } from "../capset.js";
import type { GpuContext } from "../resources.js";
import { CAPSET_INFO_SIZE, CONTEXT_INIT_CAPSET_ID_MASK, CTX_DEBUG_NAME_MAX, GpuCmd, GpuFeature, GpuResp, HDR_SIZE } from "../virtio-gpu.js";
import { check, GpuCommandError, response, type GpuEnv, type Handled, type Request } from "./command.js";

/** Most contexts alive at once (Linux creates one per DRM file that uses the GPU). */
export const MAX_CONTEXTS = 1024;

/** Number of capsets the device advertises (config `num_capsets`). */
export const NUM_CAPSETS = 1;

/** True for the command types this handler serves. */
export function isContextCommand(type: number): boolean {
  return type === GpuCmd.GET_CAPSET_INFO || type === GpuCmd.GET_CAPSET || (type >= GpuCmd.CTX_CREATE && type <= GpuCmd.SUBMIT_3D);
}

/** The capset and context commands of controlq. */
export class ContextCommands {
  readonly #env: GpuEnv;

  constructor(env: GpuEnv) {
    this.#env = env;
  }

  /** Serves one request whose type satisfies {@link isContextCommand}. */
  handle(r: Request): Handled {
    switch (r.hdr.type) {
      case GpuCmd.GET_CAPSET_INFO:
        return this.#capsetInfo(r);
      case GpuCmd.GET_CAPSET:
        return this.#capset(r);
    }
    check((this.#env.features() & GpuFeature.VIRGL) !== 0n, GpuResp.ERR_UNSPEC, `3D command 0x${r.hdr.type.toString(16)}: VIRGL was not negotiated`);
    switch (r.hdr.type) {
      case GpuCmd.CTX_CREATE:
        return this.#create(r);
      case GpuCmd.CTX_DESTROY:
        this.#env.state.contexts.delete(this.context(r.hdr.ctxId, "ctx_destroy").id);
        return { resp: response(r.hdr, GpuResp.OK_NODATA) };
      case GpuCmd.CTX_ATTACH_RESOURCE:
      case GpuCmd.CTX_DETACH_RESOURCE:
        return this.#attach(r, r.hdr.type === GpuCmd.CTX_ATTACH_RESOURCE);
      default: {
        // RESOURCE_CREATE_3D, TRANSFER_TO/FROM_HOST_3D, SUBMIT_3D: rendering, which no capset of this device has.
        const ctx = this.context(r.hdr.ctxId, `3D command 0x${r.hdr.type.toString(16)}`);
        throw new GpuCommandError(
          GpuResp.ERR_UNSPEC,
          `3D command 0x${r.hdr.type.toString(16)} in context ${ctx.id}: the ${ctx.capsetId === 0 ? "default context" : `capset ${ctx.capsetId}`} has no rendering`,
        );
      }
    }
  }

  /** The live context `id`; ERR_INVALID_CONTEXT_ID otherwise. */
  context(id: number, what: string): GpuContext {
    const ctx = this.#env.state.contexts.get(id);
    check(ctx !== undefined, GpuResp.ERR_INVALID_CONTEXT_ID, `${what}: context ${id} does not exist`);
    return ctx;
  }

  #capsetInfo(r: Request): Handled {
    const index = r.view.getUint32(24, true);
    check(index < NUM_CAPSETS, GpuResp.ERR_INVALID_PARAMETER, `get_capset_info: capset index ${index} (the device has ${NUM_CAPSETS})`);
    const out = response(r.hdr, GpuResp.OK_CAPSET_INFO, CAPSET_INFO_SIZE);
    const v = new DataView(out.buffer);
    v.setUint32(24, VHOSTKIT_CAPSET_ID, true);
    v.setUint32(28, VHOSTKIT_CAPSET_VERSION, true);
    v.setUint32(32, VHOSTKIT_CAPSET_SIZE, true);
    return { resp: out };
  }

  #capset(r: Request): Handled {
    const id = r.view.getUint32(24, true);
    const version = r.view.getUint32(28, true);
    check(id === VHOSTKIT_CAPSET_ID, GpuResp.ERR_INVALID_PARAMETER, `get_capset: unknown capset ${id}`);
    check(
      version >= 1 && version <= VHOSTKIT_CAPSET_VERSION,
      GpuResp.ERR_INVALID_PARAMETER,
      `get_capset: capset ${id} has no version ${version} (1..${VHOSTKIT_CAPSET_VERSION})`,
    );
    const out = response(r.hdr, GpuResp.OK_CAPSET, HDR_SIZE + VHOSTKIT_CAPSET_SIZE);
    out.set(vhostkitCapset(), HDR_SIZE);
    return { resp: out };
  }

  #create(r: Request): Handled {
    const st = this.#env.state;
    const id = r.hdr.ctxId;
    const nlen = r.view.getUint32(24, true);
    const init = r.view.getUint32(28, true);
    const capsetId = init & CONTEXT_INIT_CAPSET_ID_MASK;
    check(id !== 0, GpuResp.ERR_INVALID_CONTEXT_ID, "ctx_create: context id 0 is reserved");
    check(!st.contexts.has(id), GpuResp.ERR_INVALID_CONTEXT_ID, `ctx_create: context ${id} already exists`);
    check(nlen <= CTX_DEBUG_NAME_MAX, GpuResp.ERR_INVALID_PARAMETER, `ctx_create: debug name of ${nlen} bytes (at most ${CTX_DEBUG_NAME_MAX})`);
    check(init === capsetId, GpuResp.ERR_INVALID_PARAMETER, `ctx_create: reserved context_init bits 0x${(init & ~CONTEXT_INIT_CAPSET_ID_MASK).toString(16)}`);
    check(
      capsetId === 0 || (this.#env.features() & GpuFeature.CONTEXT_INIT) !== 0n,
      GpuResp.ERR_INVALID_PARAMETER,
      `ctx_create: capset ${capsetId} named without CONTEXT_INIT negotiated`,
    );
    check(
      capsetId === 0 || capsetId === VHOSTKIT_CAPSET_ID,
      GpuResp.ERR_INVALID_PARAMETER,
      `ctx_create: capset ${capsetId} is not offered (only ${VHOSTKIT_CAPSET_ID})`,
    );
    check(st.contexts.size < MAX_CONTEXTS, GpuResp.ERR_OUT_OF_MEMORY, `ctx_create: ${MAX_CONTEXTS} contexts exist`);
    const name = String.fromCharCode(...r.bytes.subarray(32, 32 + nlen)).replace(/[^\x20-\x7e]/g, "?");
    st.contexts.set(id, { id, capsetId, name, resources: new Set() });
    return { resp: response(r.hdr, GpuResp.OK_NODATA), capsetId };
  }

  #attach(r: Request, attach: boolean): Handled {
    const what = attach ? "ctx_attach_resource" : "ctx_detach_resource";
    const ctx = this.context(r.hdr.ctxId, what);
    const id = r.view.getUint32(24, true);
    check(this.#env.state.resources.has(id), GpuResp.ERR_INVALID_RESOURCE_ID, `${what}: resource ${id} does not exist`);
    if (attach) ctx.resources.add(id);
    else ctx.resources.delete(id); // detaching a resource that is not attached is a no-op, as in QEMU
    return { resp: response(r.hdr, GpuResp.OK_NODATA), resourceId: id };
  }
}
