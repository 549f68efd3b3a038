/**
 * controlq (queue 0): the virtio-gpu 2D commands (resources, backing, transfers, scanouts, flushes);
 * host blobs are `blobs.ts`, contexts and capsets `contexts.ts`.
 * Every refusal is an error response; see the README for the table.
 * @module
 */
import type { QueueContext } from "@vhostkit/backend";
import type { GuestAddress, GuestMemory } from "@vhostkit/regions";
import { ChainBatch } from "@vhostkit/virtqueue";
import { EDID_RESPONSE_SIZE } from "../edid.js";
import type { BackingEntry } from "../resources.js";
import {
  BYTES_PER_PIXEL,
  decodeRect,
  DISPLAY_INFO_SIZE,
  encodeRect,
  GpuCmd,
  GpuResp,
  isGpuFormat,
  MEM_ENTRY_SIZE,
  rectInside,
  type Rect,
} from "../virtio-gpu.js";
import { BlobCommands } from "./blobs.js";
import { check, execute, GpuCommandError, response, serveChains, type GpuEnv, type Handled, type Request } from "./command.js";
import { ContextCommands, isContextCommand } from "./contexts.js";
import { checkHostBytes, checkNewResourceId, checkScanoutId, ok, require2d, requireBlob, requireResource } from "./resource-checks.js";

/** Largest width or height of a resource or scanout, pixels. */
export const MAX_DIMENSION = 16384;

/** Most entries in one RESOURCE_ATTACH_BACKING (as vhost-user-gpu). */
export const MAX_BACKING_ENTRIES = 16384;

/** The control queue handler. */
export class ControlQueue {
  readonly #env: GpuEnv;
  readonly #batch = new ChainBatch(64);
  readonly #contexts: ContextCommands;
  readonly #blobs: BlobCommands;
  constructor(env: GpuEnv) {
    this.#env = env;
    this.#contexts = new ContextCommands(env);
    this.#blobs = new BlobCommands(env, this.#contexts);
  }

  /** Serves every available chain of queue 0. */
  process(ctx: QueueContext): Promise<void> {
    return serveChains(ctx, this.#batch, (req) => this.handle(req, ctx.memory));
  }

  /** Executes one request (the device-readable bytes of a chain) against `memory`; never throws. */
  handle(req: Uint8Array, memory: GuestMemory): Promise<Uint8Array> {
    return execute(this.#env, "control", req, async (r) => this.#dispatch(r, memory));
  }

  #dispatch(r: Request, memory: GuestMemory): Promise<Handled> | Handled {
    switch (r.hdr.type) {
      case GpuCmd.GET_DISPLAY_INFO:
        return this.#displayInfo(r);
      case GpuCmd.RESOURCE_CREATE_2D:
        return this.#create2d(r);
      case GpuCmd.RESOURCE_UNREF:
        return this.#unref(r);
      case GpuCmd.SET_SCANOUT:
        return this.#setScanout(r);
      case GpuCmd.SET_SCANOUT_BLOB:
        return this.#setScanoutBlob(r);
      case GpuCmd.RESOURCE_FLUSH:
        return this.#flush(r);
      case GpuCmd.TRANSFER_TO_HOST_2D:
        return this.#transfer(r, memory);
      case GpuCmd.RESOURCE_ATTACH_BACKING:
        return this.#attach(r, memory);
      case GpuCmd.RESOURCE_DETACH_BACKING:
        return this.#detach(r);
      case GpuCmd.GET_EDID:
        return this.#edid(r);
      case GpuCmd.RESOURCE_CREATE_BLOB:
        return this.#blobs.create(r);
      case GpuCmd.RESOURCE_MAP_BLOB:
        return this.#blobs.map(r);
      case GpuCmd.RESOURCE_UNMAP_BLOB:
        return this.#blobs.unmap(r);
      default:
        if (isContextCommand(r.hdr.type)) return this.#contexts.handle(r);
        throw new GpuCommandError(GpuResp.ERR_UNSPEC, `unsupported command 0x${r.hdr.type.toString(16)} on controlq`);
    }
  }

  #displayInfo(r: Request): Handled {
    const out = response(r.hdr, GpuResp.OK_DISPLAY_INFO, DISPLAY_INFO_SIZE);
    const v = new DataView(out.buffer);
    for (let i = 0; i < this.#env.state.scanouts.length; i++) {
      const base = 24 + i * 24;
      if (i === 0) encodeRect(v, base, { x: 0, y: 0, width: this.#env.display.width, height: this.#env.display.height });
      v.setUint32(base + 16, i === 0 ? 1 : 0, true); // enabled
    }
    return { resp: out };
  }

  #edid(r: Request): Handled {
    const edid = this.#env.edid;
    check(edid !== undefined, GpuResp.ERR_UNSPEC, "get_edid: EDID is not offered");
    checkScanoutId(this.#env, r.view.getUint32(24, true));
    const out = response(r.hdr, GpuResp.OK_EDID, EDID_RESPONSE_SIZE);
    new DataView(out.buffer).setUint32(24, edid.byteLength, true);
    out.set(edid, 32);
    return { resp: out };
  }

  #create2d(r: Request): Handled {
    const v = r.view;
    const id = v.getUint32(24, true);
    const format = v.getUint32(28, true);
    const width = v.getUint32(32, true);
    const height = v.getUint32(36, true);
    checkNewResourceId(this.#env, id);
    check(isGpuFormat(format), GpuResp.ERR_INVALID_PARAMETER, `resource ${id}: unsupported format ${format}`);
    check(
      width > 0 && height > 0 && width <= MAX_DIMENSION && height <= MAX_DIMENSION,
      GpuResp.ERR_INVALID_PARAMETER,
      `resource ${id}: size ${width}x${height} not in 1..${MAX_DIMENSION}`,
    );
    const bytes = BigInt(width) * BigInt(height) * BigInt(BYTES_PER_PIXEL);
    checkHostBytes(this.#env, bytes, `resource ${id}`);
    this.#env.state.resources.set(id, { kind: "2d", id, format, width, height, pixels: new Uint8Array(Number(bytes)), backing: undefined });
    this.#env.state.hostBytes += bytes;
    return ok(r, id);
  }

  async #unref(r: Request): Promise<Handled> {
    const id = r.view.getUint32(24, true);
    const res = requireResource(this.#env, id);
    if (res.kind === "blob" && res.mapping !== undefined) {
      // The Linux driver unmaps first; a driver that does not still gets the range freed.
      const m = res.mapping;
      res.mapping = undefined;
      if (this.#env.mapper.canMap()) await this.#env.mapper.unmap(m.offset, m.len).catch(() => undefined);
    }
    this.#env.state.remove(id);
    return ok(r, id);
  }

  #setScanout(r: Request): Handled {
    const v = r.view;
    const rect = decodeRect(v, 24);
    const scanoutId = v.getUint32(40, true);
    const id = v.getUint32(44, true);
    checkScanoutId(this.#env, scanoutId);
    if (id === 0) {
      this.#env.state.scanouts[scanoutId] = undefined;
      return ok(r);
    }
    const res = requireResource(this.#env, id);
    check(res.kind === "2d", GpuResp.ERR_INVALID_PARAMETER, `set_scanout: resource ${id} is a blob (use SET_SCANOUT_BLOB)`);
    check(
      rectInside(rect, res.width, res.height),
      GpuResp.ERR_INVALID_PARAMETER,
      `set_scanout: rect ${rectText(rect)} outside resource ${id} (${res.width}x${res.height})`,
    );
    this.#env.state.scanouts[scanoutId] = { resourceId: id, rect, layout: undefined };
    return ok(r, id);
  }

  #setScanoutBlob(r: Request): Handled {
    const v = r.view;
    const rect = decodeRect(v, 24);
    const scanoutId = v.getUint32(40, true);
    const id = v.getUint32(44, true);
    const width = v.getUint32(48, true);
    const height = v.getUint32(52, true);
    const format = v.getUint32(56, true);
    const stride = v.getUint32(64, true);
    const offset = v.getUint32(80, true);
    checkScanoutId(this.#env, scanoutId);
    if (id === 0) {
      this.#env.state.scanouts[scanoutId] = undefined;
      return ok(r);
    }
    const res = requireBlob(this.#env, id, "set_scanout_blob");
    check(isGpuFormat(format), GpuResp.ERR_INVALID_PARAMETER, `set_scanout_blob: unsupported format ${format}`);
    check(
      width > 0 && height > 0 && width <= MAX_DIMENSION && height <= MAX_DIMENSION,
      GpuResp.ERR_INVALID_PARAMETER,
      `set_scanout_blob: size ${width}x${height} not in 1..${MAX_DIMENSION}`,
    );
    check(stride >= width * BYTES_PER_PIXEL, GpuResp.ERR_INVALID_PARAMETER, `set_scanout_blob: stride ${stride} < ${width * BYTES_PER_PIXEL}`);
    const end = BigInt(offset) + BigInt(stride) * BigInt(height - 1) + BigInt(width * BYTES_PER_PIXEL);
    check(
      end <= res.size,
      GpuResp.ERR_INVALID_PARAMETER,
      `set_scanout_blob: the surface ends at 0x${end.toString(16)}, past the blob's 0x${res.size.toString(16)} bytes`,
    );
    check(rectInside(rect, width, height), GpuResp.ERR_INVALID_PARAMETER, `set_scanout_blob: rect ${rectText(rect)} outside ${width}x${height}`);
    this.#env.state.scanouts[scanoutId] = { resourceId: id, rect, layout: { format, width, height, stride, offset } };
    return ok(r, id);
  }

  async #flush(r: Request): Promise<Handled> {
    const v = r.view;
    const rect = decodeRect(v, 24);
    const id = v.getUint32(40, true);
    const res = requireResource(this.#env, id);
    const st = this.#env.state;
    if (res.kind === "2d")
      check(
        rectInside(rect, res.width, res.height),
        GpuResp.ERR_INVALID_PARAMETER,
        `resource_flush: rect ${rectText(rect)} outside resource ${id} (${res.width}x${res.height})`,
      );
    for (let i = 0; i < st.scanouts.length; i++) {
      const s = st.scanouts[i];
      if (s?.resourceId !== id) continue;
      if (s.layout !== undefined)
        check(
          rectInside(rect, s.layout.width, s.layout.height),
          GpuResp.ERR_INVALID_PARAMETER,
          `resource_flush: rect ${rectText(rect)} outside the ${s.layout.width}x${s.layout.height} blob scanout`,
        );
      const frame = st.render(i);
      if (frame !== undefined && this.#env.onFrame !== undefined) await this.#env.onFrame(frame);
    }
    return ok(r, id);
  }

  async #transfer(r: Request, memory: GuestMemory): Promise<Handled> {
    const v = r.view;
    const rect = decodeRect(v, 24);
    const offset = v.getBigUint64(40, true);
    const id = v.getUint32(48, true);
    const res = require2d(this.#env, id, "transfer_to_host_2d");
    check(
      rectInside(rect, res.width, res.height),
      GpuResp.ERR_INVALID_PARAMETER,
      `transfer_to_host_2d: rect ${rectText(rect)} outside resource ${id} (${res.width}x${res.height})`,
    );
    const backing = res.backing;
    check(backing !== undefined, GpuResp.ERR_UNSPEC, `transfer_to_host_2d: resource ${id} has no backing`);
    const stride = res.width * BYTES_PER_PIXEL;
    const rowBytes = rect.width * BYTES_PER_PIXEL;
    const total = backing.reduce((s, e) => s + e.len, 0);
    const end = offset + BigInt(stride) * BigInt(rect.height - 1) + BigInt(rowBytes);
    check(
      end <= BigInt(total),
      GpuResp.ERR_INVALID_PARAMETER,
      `transfer_to_host_2d: needs backing up to 0x${end.toString(16)}, resource ${id} has 0x${total.toString(16)} bytes`,
    );
    const src = Number(offset);
    if (src === 0 && rect.x === 0 && rect.y === 0 && rect.width === res.width) {
      await readBacking(backing, memory, 0, res.pixels.subarray(0, stride * rect.height));
    } else {
      for (let y = 0; y < rect.height; y++) {
        const dst = (rect.y + y) * stride + rect.x * BYTES_PER_PIXEL;
        await readBacking(backing, memory, src + y * stride, res.pixels.subarray(dst, dst + rowBytes));
      }
    }
    return ok(r, id);
  }

  #attach(r: Request, memory: GuestMemory): Handled {
    const v = r.view;
    const id = v.getUint32(24, true);
    const n = v.getUint32(28, true);
    const res = require2d(this.#env, id, "resource_attach_backing");
    check(n >= 1 && n <= MAX_BACKING_ENTRIES, GpuResp.ERR_INVALID_PARAMETER, `resource_attach_backing: ${n} entries not in 1..${MAX_BACKING_ENTRIES}`);
    check(
      r.bytes.byteLength >= 32 + n * MEM_ENTRY_SIZE,
      GpuResp.ERR_UNSPEC,
      `resource_attach_backing: ${n} entries need ${32 + n * MEM_ENTRY_SIZE} bytes, the request has ${r.bytes.byteLength}`,
    );
    check(res.backing === undefined, GpuResp.ERR_UNSPEC, `resource_attach_backing: resource ${id} already has backing`);
    const entries: BackingEntry[] = [];
    for (let i = 0; i < n; i++) {
      const addr = v.getBigUint64(32 + i * MEM_ENTRY_SIZE, true);
      const len = v.getUint32(40 + i * MEM_ENTRY_SIZE, true);
      check(
        len > 0 && addr + BigInt(len) <= 1n << 64n,
        GpuResp.ERR_INVALID_PARAMETER,
        `resource_attach_backing: entry ${i} (0x${addr.toString(16)}+0x${len.toString(16)}) is empty or wraps`,
      );
      check(
        reachable(memory, addr, len),
        GpuResp.ERR_INVALID_PARAMETER,
        `resource_attach_backing: entry ${i} (0x${addr.toString(16)}+0x${len.toString(16)}) is not reachable guest memory`,
      );
      entries.push({ addr: addr as GuestAddress, len });
    }
    res.backing = entries;
    return ok(r, id);
  }

  #detach(r: Request): Handled {
    const id = r.view.getUint32(24, true);
    const res = require2d(this.#env, id, "resource_detach_backing");
    check(res.backing !== undefined, GpuResp.ERR_UNSPEC, `resource_detach_backing: resource ${id} has no backing`);
    res.backing = undefined;
    return ok(r, id);
  }
}

function rectText(r: Rect): string {
  return `${r.width}x${r.height}+${r.x}+${r.y}`;
}

/**
 * True when every byte of `[addr, addr + len)` is reachable: it translates in the memory table, or the
 * memory says it can reach it otherwise (MEM_READ/MEM_WRITE fallback, `GuestMemory.reachable`).
 */
function reachable(memory: GuestMemory, addr: bigint, len: number): boolean {
  if (memory.reachable !== undefined) return memory.reachable(addr as GuestAddress, len);
  let done = 0;
  while (done < len) {
    const t = memory.translate((addr + BigInt(done)) as GuestAddress, len - done);
    if (!t.ok || t.span.bytes.byteLength === 0) return false;
    done += t.span.bytes.byteLength;
  }
  return true;
}

/** Copies `dst.length` bytes from linear offset `offset` of the backing into `dst`. */
async function readBacking(backing: readonly BackingEntry[], memory: GuestMemory, offset: number, dst: Uint8Array): Promise<void> {
  let skip = offset;
  let done = 0;
  for (const e of backing) {
    if (done >= dst.length) break;
    if (skip >= e.len) {
      skip -= e.len;
      continue;
    }
    const n = Math.min(e.len - skip, dst.length - done);
    await memory.read((e.addr + BigInt(skip)) as GuestAddress, dst.subarray(done, done + n));
    done += n;
    skip = 0;
  }
}
