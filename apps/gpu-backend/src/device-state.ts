/**
 * The GPU device's state as a byte stream, for device state transfer (DEVICE_STATE,
 * docs/protocol.md#device-state-transfer): resources (2D pixels and their guest backing, host blob
 * contents and where each blob was mapped in shmid 1), contexts, scanouts, the cursor and the
 * config's `events_read`. Mappings themselves belong to the front-end: a loaded blob remembers its
 * offset and is mapped again with SHMEM_MAP when the device next starts.
 *
 * Format (little-endian, version 1): a 52-byte header (magic `VKGPUST\0`, version, scanout count,
 * events_read, resource count, context count, cursor), then per resource a 48-byte record and its
 * bytes (2D: backing entries of 16 bytes, then width × height × 4 pixel bytes; blob: its host
 * bytes, the size rounded up to pages), per context a 16-byte record, its name and its resource
 * ids, and one 48-byte record per scanout.
 * @module
 */
import type { StateReader, StateWriter } from "@vhostkit/backend";
import type { GuestAddress } from "@vhostkit/regions";
import { HostBlob } from "./host-blob.js";
import { CURSOR_SIZE } from "./queues/cursor.js";
import { MAX_CONTEXTS } from "./queues/contexts.js";
import { MAX_BACKING_ENTRIES, MAX_DIMENSION } from "./queues/control.js";
import type { BackingEntry, CursorState, GpuContext, GpuState, Resource, Scanout } from "./resources.js";
import { BlobFlag, BYTES_PER_PIXEL, CTX_DEBUG_NAME_MAX, isGpuFormat, rectInside } from "./virtio-gpu.js";

const MAGIC = "VKGPUST\0";
const VERSION = 1;
const HEADER = 52;
const RECORD = 48;
const CTX_RECORD = 16;
const ENTRY = 16;
const NO_BACKING = 0xffff_ffff;
const KIND_2D = 1;
const KIND_BLOB = 2;

/** What a loaded state must fit: the device's own configuration. */
export interface StateLimits {
  /** Scanouts of this device (a state of another count is refused). */
  readonly numScanouts: number;
  /** Size of shmid 1, bytes. */
  readonly shmSize: bigint;
  /** Alignment of blob mappings, bytes (the page size). */
  readonly blobAlignment: bigint;
  /** Cap on host memory for resources, bytes. */
  readonly maxHostBytes: bigint;
}

/** What {@link loadGpuState} read, not yet installed. */
export interface LoadedGpuState {
  /** Resources by id; blobs hold fresh host memory with the saved bytes, mapped ones `restore: true`. */
  readonly resources: Map<number, Resource>;
  /** Contexts by id. */
  readonly contexts: Map<number, GpuContext>;
  /** One per scanout of the device. */
  readonly scanouts: (Scanout | undefined)[];
  /** The cursor. */
  readonly cursor: CursorState;
  /** The config's `events_read`. */
  readonly eventsRead: number;
  /** Host bytes the resources use. */
  readonly hostBytes: bigint;
}

/** Writes `state` (and `eventsRead`) to `out`, resource bytes straight from their buffers. */
export async function saveGpuState(state: GpuState, eventsRead: number, out: StateWriter): Promise<void> {
  const head = new Uint8Array(HEADER);
  const hv = new DataView(head.buffer);
  head.set(new TextEncoder().encode(MAGIC), 0);
  const c = state.cursor;
  [VERSION, state.scanouts.length, eventsRead, state.resources.size, state.contexts.size, c.resourceId, c.scanoutId, c.x, c.y, c.hotX, c.hotY].forEach((n, i) =>
    hv.setUint32(8 + 4 * i, n, true),
  );
  await out.write(head);
  for (const r of state.resources.values()) {
    const rec = new Uint8Array(RECORD);
    const v = new DataView(rec.buffer);
    v.setUint32(4, r.id, true);
    if (r.kind === "2d") {
      [KIND_2D, r.id, r.format, r.width, r.height, r.backing?.length ?? NO_BACKING].forEach((n, i) => v.setUint32(4 * i, n, true));
      const entries = new Uint8Array(ENTRY * (r.backing?.length ?? 0));
      const ev = new DataView(entries.buffer);
      r.backing?.forEach((e, i) => {
        ev.setBigUint64(i * ENTRY, e.addr, true);
        ev.setUint32(i * ENTRY + 8, e.len, true);
      });
      await out.write(rec);
      if (entries.byteLength > 0) await out.write(entries);
      await out.write(r.pixels);
    } else {
      [KIND_BLOB, r.id, r.blobFlags, r.mapping === undefined ? 0 : 1].forEach((n, i) => v.setUint32(4 * i, n, true));
      v.setBigUint64(24, r.size, true);
      v.setBigUint64(32, r.mapping?.offset ?? 0n, true);
      v.setBigUint64(40, r.mapping?.len ?? 0n, true);
      await out.write(rec);
      await out.write(r.blob.bytes);
    }
  }
  for (const ctx of state.contexts.values()) {
    const name = new TextEncoder().encode(ctx.name);
    const rec = new Uint8Array(CTX_RECORD + name.byteLength + 4 * ctx.resources.size);
    const v = new DataView(rec.buffer);
    [ctx.id, ctx.capsetId, name.byteLength, ctx.resources.size].forEach((n, i) => v.setUint32(4 * i, n, true));
    rec.set(name, CTX_RECORD);
    [...ctx.resources].forEach((id, i) => v.setUint32(CTX_RECORD + name.byteLength + 4 * i, id, true));
    await out.write(rec);
  }
  for (const s of state.scanouts) {
    const rec = new Uint8Array(RECORD);
    const v = new DataView(rec.buffer);
    if (s !== undefined) {
      const l = s.layout;
      [
        1,
        s.resourceId,
        s.rect.x,
        s.rect.y,
        s.rect.width,
        s.rect.height,
        l === undefined ? 0 : 1,
        l?.format ?? 0,
        l?.width ?? 0,
        l?.height ?? 0,
        l?.stride ?? 0,
        l?.offset ?? 0,
      ].forEach((n, i) => v.setUint32(4 * i, n, true));
    }
    await out.write(rec);
  }
}

/** Throws the refusal of a loaded state (the framework reports it as `STATE_INVALID`) unless `ok`. */
function need(ok: boolean, message: string): asserts ok {
  if (!ok) throw new Error(`gpu state: ${message}`);
}

/** Reads `len` bytes as a little-endian view. */
async function record(input: StateReader, len: number): Promise<DataView> {
  const b = await input.readExactly(len);
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

/**
 * Reads a state {@link saveGpuState} wrote, checking everything against `limits` as the commands
 * that built it would have (ids, formats, sizes, host memory, mapping ranges, scanout rects), up to
 * the end of the stream. Nothing is installed: the caller does that. Host blobs created here are
 * released again when it throws.
 * @throws Error for a state this device does not accept; what `input` throws.
 */
export async function loadGpuState(input: StateReader, limits: StateLimits): Promise<LoadedGpuState> {
  const resources = new Map<number, Resource>();
  try {
    const h = await record(input, HEADER);
    need(new TextDecoder().decode(new Uint8Array(h.buffer, h.byteOffset, 8)) === MAGIC, "not a vhostkit-gpu state");
    const u = (i: number): number => h.getUint32(8 + 4 * i, true);
    need(u(0) === VERSION, `version ${u(0)}, expected ${VERSION}`);
    need(u(1) === limits.numScanouts, `${u(1)} scanouts, this device has ${limits.numScanouts}`);
    const [eventsRead, resourceCount, contextCount] = [u(2), u(3), u(4)];
    const cursor: CursorState = { resourceId: u(5), scanoutId: u(6), x: u(7), y: u(8), hotX: u(9), hotY: u(10) };
    need(contextCount <= MAX_CONTEXTS, `${contextCount} contexts (at most ${MAX_CONTEXTS})`);
    let hostBytes = 0n;
    const reserve = (bytes: bigint, what: string): void => {
      hostBytes += bytes;
      need(hostBytes <= limits.maxHostBytes, `${what}: host memory past the cap of 0x${limits.maxHostBytes.toString(16)} bytes`);
    };
    const mapped: { offset: bigint; len: bigint; id: number }[] = [];
    for (let i = 0; i < resourceCount; i++) {
      const v = await record(input, RECORD);
      const kind = v.getUint32(0, true);
      const id = v.getUint32(4, true);
      need(id !== 0 && !resources.has(id), `resource id ${id} is 0 or repeated`);
      if (kind === KIND_2D) {
        const [format, width, height, n] = [v.getUint32(8, true), v.getUint32(12, true), v.getUint32(16, true), v.getUint32(20, true)];
        need(isGpuFormat(format), `resource ${id}: format ${format}`);
        need(width > 0 && height > 0 && width <= MAX_DIMENSION && height <= MAX_DIMENSION, `resource ${id}: size ${width}x${height}`);
        need(n === NO_BACKING || (n >= 1 && n <= MAX_BACKING_ENTRIES), `resource ${id}: ${n} backing entries`);
        const bytes = width * height * BYTES_PER_PIXEL;
        reserve(BigInt(bytes), `resource ${id}`);
        let backing: BackingEntry[] | undefined;
        if (n !== NO_BACKING) {
          const ev = await record(input, n * ENTRY);
          backing = Array.from({ length: n }, (_, e) => ({ addr: ev.getBigUint64(e * ENTRY, true) as GuestAddress, len: ev.getUint32(e * ENTRY + 8, true) }));
          need(
            backing.every((e) => e.len > 0 && e.addr + BigInt(e.len) <= 1n << 64n),
            `resource ${id}: an empty or wrapping backing entry`,
          );
        }
        const pixels = await input.readExactly(bytes);
        resources.set(id, { kind: "2d", id, format, width, height, pixels, backing });
      } else {
        need(kind === KIND_BLOB, `resource ${id}: kind ${kind}`);
        const [flags, isMapped, size, offset, len] = [
          v.getUint32(8, true),
          v.getUint32(12, true),
          v.getBigUint64(24, true),
          v.getBigUint64(32, true),
          v.getBigUint64(40, true),
        ];
        need((flags & ~(BlobFlag.USE_MAPPABLE | BlobFlag.USE_SHAREABLE | BlobFlag.USE_CROSS_DEVICE)) === 0, `blob ${id}: flags 0x${flags.toString(16)}`);
        const rounded = HostBlob.roundUp(size);
        need(size > 0n && rounded <= limits.shmSize, `blob ${id}: size 0x${size.toString(16)}`);
        need(isMapped <= 1, `blob ${id}: mapping state ${isMapped}`);
        reserve(rounded, `blob ${id}`);
        if (isMapped === 1) {
          need((flags & BlobFlag.USE_MAPPABLE) !== 0, `blob ${id}: mapped, not USE_MAPPABLE`);
          need(
            len === rounded && offset % limits.blobAlignment === 0n && offset + len <= limits.shmSize,
            `blob ${id}: mapping 0x${offset.toString(16)}+0x${len.toString(16)}`,
          );
          const clash = mapped.find((m) => offset < m.offset + m.len && m.offset < offset + len);
          need(clash === undefined, `blob ${id}: mapping overlaps blob ${clash?.id}`);
          mapped.push({ offset, len, id });
        }
        const blob = HostBlob.tryCreate(`blob-${id}`, size);
        need(blob !== undefined, `blob ${id}: the host could not allocate 0x${rounded.toString(16)} bytes`);
        resources.set(id, { kind: "blob", id, blobFlags: flags, size, blob, mapping: isMapped === 1 ? { offset, len, restore: true } : undefined });
        blob.bytes.set(await input.readExactly(Number(blob.size)));
      }
    }
    const contexts = new Map<number, GpuContext>();
    for (let i = 0; i < contextCount; i++) {
      const v = await record(input, CTX_RECORD);
      const [id, capsetId, nameLen, n] = [v.getUint32(0, true), v.getUint32(4, true), v.getUint32(8, true), v.getUint32(12, true)];
      need(id !== 0 && !contexts.has(id), `context id ${id} is 0 or repeated`);
      need(nameLen <= CTX_DEBUG_NAME_MAX && n <= resourceCount, `context ${id}: name of ${nameLen} bytes, ${n} resources`);
      const name = String.fromCharCode(...(await input.readExactly(nameLen))).replace(/[^\x20-\x7e]/g, "?");
      const iv = n === 0 ? undefined : await record(input, 4 * n);
      const ids = Array.from({ length: n }, (_, k) => iv?.getUint32(4 * k, true) ?? 0);
      need(
        ids.every((r) => resources.has(r)),
        `context ${id}: attached to a resource that does not exist`,
      );
      contexts.set(id, { id, capsetId, name, resources: new Set(ids) });
    }
    const scanouts: (Scanout | undefined)[] = [];
    for (let i = 0; i < limits.numScanouts; i++) scanouts.push(scanout(await record(input, RECORD), i, resources));
    need(cursor.scanoutId < limits.numScanouts, `cursor on scanout ${cursor.scanoutId}`);
    const cr = cursor.resourceId === 0 ? undefined : resources.get(cursor.resourceId);
    need(
      cursor.resourceId === 0 || (cr?.kind === "2d" && cr.width === CURSOR_SIZE && cr.height === CURSOR_SIZE),
      `cursor resource ${cursor.resourceId} is not a ${CURSOR_SIZE}x${CURSOR_SIZE} 2D resource`,
    );
    need(await input.atEnd(), "bytes after the last scanout");
    return { resources, contexts, scanouts, cursor, eventsRead, hostBytes };
  } catch (err) {
    for (const r of resources.values()) if (r.kind === "blob") r.blob.dispose();
    throw err;
  }
}

/** Scanout `i` from its record, checked as SET_SCANOUT / SET_SCANOUT_BLOB check it. */
function scanout(v: DataView, i: number, resources: ReadonlyMap<number, Resource>): Scanout | undefined {
  const w = (k: number): number => v.getUint32(4 * k, true);
  if (w(0) === 0) return undefined;
  const rect = { x: w(2), y: w(3), width: w(4), height: w(5) };
  const r = resources.get(w(1));
  need(r !== undefined, `scanout ${i}: resource ${w(1)} does not exist`);
  if (w(6) === 0) {
    need(r.kind === "2d" && rectInside(rect, r.width, r.height), `scanout ${i}: rect outside resource ${r.id}`);
    return { resourceId: r.id, rect, layout: undefined };
  }
  const layout = { format: w(7), width: w(8), height: w(9), stride: w(10), offset: w(11) };
  need(r.kind === "blob" && isGpuFormat(layout.format), `scanout ${i}: resource ${r.id} is no blob, or format ${layout.format}`);
  need(layout.width > 0 && layout.height > 0 && layout.stride >= layout.width * BYTES_PER_PIXEL, `scanout ${i}: layout ${layout.width}x${layout.height}`);
  const end = BigInt(layout.offset) + BigInt(layout.stride) * BigInt(layout.height - 1) + BigInt(layout.width * BYTES_PER_PIXEL);
  need(end <= r.size && rectInside(rect, layout.width, layout.height), `scanout ${i}: surface past blob ${r.id} or rect outside it`);
  return { resourceId: r.id, rect, layout };
}
