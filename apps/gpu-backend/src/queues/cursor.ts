/**
 * cursorq (queue 1): UPDATE_CURSOR and MOVE_CURSOR. A chain with no device-writable buffer gets no
 * response (used len 0), as QEMU's vhost-user-gpu does; one with a buffer gets the response header.
 * @module
 */
import type { QueueContext } from "@vhostkit/backend";
import { ChainBatch } from "@vhostkit/virtqueue";
import { GpuCmd, GpuResp } from "../virtio-gpu.js";
import { check, execute, response, serveChains, type GpuEnv, type Handled, type Request } from "./command.js";

/** Width and height of a cursor image resource, pixels. */
export const CURSOR_SIZE = 64;

/** The cursor queue handler. */
export class CursorQueue {
  readonly #env: GpuEnv;
  readonly #batch = new ChainBatch(16);

  constructor(env: GpuEnv) {
    this.#env = env;
  }

  /** Serves every available chain of queue 1. */
  process(ctx: QueueContext): Promise<void> {
    return serveChains(ctx, this.#batch, (req) => this.handle(req));
  }

  /** Executes one cursor request; never throws. */
  handle(req: Uint8Array): Promise<Uint8Array> {
    return execute(this.#env, "cursor", req, async (r) => this.#dispatch(r));
  }

  #dispatch(r: Request): Handled {
    const v = r.view;
    const st = this.#env.state;
    const scanoutId = v.getUint32(24, true);
    const x = v.getUint32(28, true);
    const y = v.getUint32(32, true);
    const id = v.getUint32(40, true);
    check(
      r.hdr.type === GpuCmd.UPDATE_CURSOR || r.hdr.type === GpuCmd.MOVE_CURSOR,
      GpuResp.ERR_UNSPEC,
      `command 0x${r.hdr.type.toString(16)} is not a cursor command`,
    );
    check(scanoutId < st.scanouts.length, GpuResp.ERR_INVALID_SCANOUT_ID, `cursor: scanout ${scanoutId} does not exist`);
    if (r.hdr.type === GpuCmd.UPDATE_CURSOR && id !== 0) {
      const res = st.resources.get(id);
      check(res !== undefined, GpuResp.ERR_INVALID_RESOURCE_ID, `update_cursor: resource ${id} does not exist`);
      check(
        res.kind === "2d" && res.width === CURSOR_SIZE && res.height === CURSOR_SIZE,
        GpuResp.ERR_INVALID_PARAMETER,
        `update_cursor: resource ${id} is not a ${CURSOR_SIZE}x${CURSOR_SIZE} 2D resource`,
      );
    }
    if (r.hdr.type === GpuCmd.UPDATE_CURSOR) Object.assign(st.cursor, { resourceId: id, hotX: v.getUint32(44, true), hotY: v.getUint32(48, true) });
    Object.assign(st.cursor, { scanoutId, x, y });
    return { resp: response(r.hdr, GpuResp.OK_NODATA), ...(id === 0 ? {} : { resourceId: id }) };
  }
}
