/**
 * The checks controlq's commands share: resource lookups by id and kind, a new id's validity, the
 * host memory cap, and the plain OK_NODATA response. Each refusal is a `GpuCommandError`
 * (an error response).
 * @module
 */
import type { BlobResource, Resource, Resource2D } from "../resources.js";
import { GpuResp } from "../virtio-gpu.js";
import { check, response, type GpuEnv, type Handled, type Request } from "./command.js";

/** RESP_OK_NODATA for `r`, naming the resource it touched. */
export function ok(r: Request, resourceId?: number): Handled {
  return { resp: response(r.hdr, GpuResp.OK_NODATA), ...(resourceId === undefined ? {} : { resourceId }) };
}

/** The resource `id`. @throws GpuCommandError `ERR_INVALID_RESOURCE_ID` when there is none. */
export function requireResource(env: GpuEnv, id: number): Resource {
  const res = env.state.resources.get(id);
  check(res !== undefined, GpuResp.ERR_INVALID_RESOURCE_ID, `resource ${id} does not exist`);
  return res;
}

/** The 2D resource `id` (`what` names the command). @throws GpuCommandError when missing or a blob. */
export function require2d(env: GpuEnv, id: number, what: string): Resource2D {
  const res = requireResource(env, id);
  check(res.kind === "2d", GpuResp.ERR_INVALID_PARAMETER, `${what}: resource ${id} is a blob`);
  return res;
}

/** The blob resource `id` (`what` names the command). @throws GpuCommandError when missing or not a blob. */
export function requireBlob(env: GpuEnv, id: number, what: string): BlobResource {
  const res = requireResource(env, id);
  check(res.kind === "blob", GpuResp.ERR_INVALID_PARAMETER, `${what}: resource ${id} is not a blob`);
  return res;
}

/** Checks that scanout `id` exists. @throws GpuCommandError `ERR_INVALID_SCANOUT_ID`. */
export function checkScanoutId(env: GpuEnv, id: number): void {
  check(id < env.state.scanouts.length, GpuResp.ERR_INVALID_SCANOUT_ID, `scanout ${id} does not exist (${env.state.scanouts.length} scanouts)`);
}

/** Checks that `id` can name a new resource (not 0, not in use). @throws GpuCommandError `ERR_INVALID_RESOURCE_ID`. */
export function checkNewResourceId(env: GpuEnv, id: number): void {
  check(id !== 0, GpuResp.ERR_INVALID_RESOURCE_ID, "resource id 0 is reserved");
  check(!env.state.resources.has(id), GpuResp.ERR_INVALID_RESOURCE_ID, `resource ${id} already exists`);
}

/** Checks that `bytes` more host memory stay within the cap (`what` names the command). @throws GpuCommandError `ERR_OUT_OF_MEMORY`. */
export function checkHostBytes(env: GpuEnv, bytes: bigint, what: string): void {
  const st = env.state;
  check(
    st.hostBytes + bytes <= env.maxHostBytes,
    GpuResp.ERR_OUT_OF_MEMORY,
    `${what}: 0x${bytes.toString(16)} bytes exceed the host memory cap (0x${(env.maxHostBytes - st.hostBytes).toString(16)} left)`,
  );
}
