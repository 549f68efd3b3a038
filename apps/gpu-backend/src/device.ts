/**
 * The GPU-like device: a {@link DeviceBackend} with virtio-gpu's id, queues, config space and the
 * host-visible shared memory region (shmid 1) into which host blobs are mapped with SHMEM_MAP.
 * @module
 */
import type { DeviceBackend, DeviceContext, QueueContext, ShmemRegionSpec, StateReader, StateWriter } from "@vhostkit/backend";
import { pageSize } from "@vhostkit/transport/sys";
import { ControlQueue } from "./queues/control.js";
import { loadGpuState, saveGpuState } from "./device-state.js";
import { makeEdid } from "./edid.js";
import { NUM_CAPSETS } from "./queues/contexts.js";
import { CursorQueue } from "./queues/cursor.js";
import type { CommandEvent, GpuEnv, ShmemMapper } from "./queues/command.js";
import { GpuState, type Frame } from "./resources.js";
import { CONFIG_SIZE, GpuFeature, HOST_VISIBLE_SHMID, MAX_SCANOUTS } from "./virtio-gpu.js";

/** Default size of shmid 1: 64 MiB. */
export const DEFAULT_SHM_SIZE = 64n << 20n;

/** Default cap on host memory for resources: 256 MiB. */
export const DEFAULT_MAX_HOST_BYTES = 256n << 20n;

/** A SHMEM_MAP or SHMEM_UNMAP of shmid 1 the front-end acknowledged. */
export interface ShmemEvent {
  readonly op: "map" | "unmap";
  /** Offset in shmid 1, bytes. */
  readonly offset: bigint;
  /** Length, bytes. */
  readonly len: bigint;
}

/** Options of {@link GpuDevice}. */
export interface GpuDeviceOptions {
  /** Size of the host-visible region (shmid 1), bytes: a power of two, at least one page (default 64 MiB). */
  readonly shmSize?: bigint;
  /** Mode of scanout 0 reported by GET_DISPLAY_INFO (default 640 × 480). */
  readonly display?: { readonly width: number; readonly height: number };
  /** Number of scanouts, 1..16 (default 1). */
  readonly numScanouts?: number;
  /** Cap on host memory for resources (2D pixels and blobs), bytes (default 256 MiB). */
  readonly maxHostBytes?: bigint;
  /** Receives each flushed scanout (RESOURCE_FLUSH); awaited before the command completes. */
  readonly onFrame?: (frame: Frame) => void | Promise<void>;
  /** Receives every handled command (logs, tests). */
  readonly onCommand?: (e: CommandEvent) => void;
  /** Receives lifecycle changes. */
  readonly onLifecycle?: (e: "start" | "stop" | "reset") => void;
  /** Receives every SHMEM_MAP / SHMEM_UNMAP once the front-end acknowledged it. */
  readonly onShmem?: (e: ShmemEvent) => void;
}

/** True when `n` is a power of two. */
export function isPowerOfTwo(n: bigint): boolean {
  return n > 0n && (n & (n - 1n)) === 0n;
}

/**
 * A virtio-gpu-like device (device id 16): controlq and cursorq, 2D resources with guest backing,
 * host blobs (memfd) mapped into shmid 1 with SHMEM_MAP while the device runs.
 *
 * Offers VIRGL and CONTEXT_INIT with one capset of its own (contexts, no rendering: the Linux driver
 * maps host blobs only for such a context), RESOURCE_BLOB, BLOB_ALIGNMENT (blob_alignment = the
 * page size) and EDID (when the display fits an EDID detailed timing); see the README.
 * Maps only while running (QEMU 11.1.3 crashes on a map or unmap after stop). A stop sends nothing
 * and keeps the mappings, which the front-end keeps too, for a restart; a reset forgets them all
 * (the front-end drops every mapping on reset) and frees every resource.
 */
export class GpuDevice implements DeviceBackend {
  readonly features: bigint;
  readonly queueCount = 2;
  readonly maxQueueSize = 1024;
  /** The device state (resources, scanouts, cursor, mappings). */
  readonly state: GpuState;
  /** Size of shmid 1, bytes. */
  readonly shmSize: bigint;
  readonly #control: ControlQueue;
  readonly #cursor: CursorQueue;
  readonly #config = new Uint8Array(CONFIG_SIZE);
  readonly #options: GpuDeviceOptions;
  readonly #mapper: ShmemMapper;
  #ctx: DeviceContext | undefined;
  #acked = 0n;

  /** @throws RangeError for a bad option. */
  constructor(options: GpuDeviceOptions = {}) {
    this.#options = options;
    const page = BigInt(pageSize());
    this.shmSize = options.shmSize ?? DEFAULT_SHM_SIZE;
    if (!isPowerOfTwo(this.shmSize) || this.shmSize < page)
      throw new RangeError(`shm size 0x${this.shmSize.toString(16)} must be a power of two of at least one page`);
    const numScanouts = options.numScanouts ?? 1;
    if (!Number.isInteger(numScanouts) || numScanouts < 1 || numScanouts > MAX_SCANOUTS)
      throw new RangeError(`num_scanouts ${numScanouts} not in 1..${MAX_SCANOUTS}`);
    const display = options.display ?? { width: 640, height: 480 };
    const edid = makeEdid(display.width, display.height);
    this.features =
      GpuFeature.VIRGL | GpuFeature.RESOURCE_BLOB | GpuFeature.CONTEXT_INIT | GpuFeature.BLOB_ALIGNMENT | (edid === undefined ? 0n : GpuFeature.EDID);
    this.state = new GpuState(numScanouts);
    const cv = new DataView(this.#config.buffer);
    cv.setUint32(8, numScanouts, true);
    cv.setUint32(12, NUM_CAPSETS, true);
    cv.setUint32(16, Number(page), true); // blob_alignment
    const mapper: ShmemMapper = {
      canMap: () => this.#ctx?.client.canMap === true,
      map: async (offset, len, fd) => {
        await this.#client().shmemMap({ shmid: HOST_VISIBLE_SHMID, shmOffset: offset, len, writable: true }, fd);
        options.onShmem?.({ op: "map", offset, len });
      },
      unmap: async (offset, len) => {
        await this.#client().shmemUnmap({ shmid: HOST_VISIBLE_SHMID, shmOffset: offset, len });
        options.onShmem?.({ op: "unmap", offset, len });
      },
    };
    this.#mapper = mapper;
    const env: GpuEnv = {
      state: this.state,
      display,
      edid,
      shmSize: this.shmSize,
      blobAlignment: page,
      maxHostBytes: options.maxHostBytes ?? DEFAULT_MAX_HOST_BYTES,
      features: () => this.#acked,
      mapper,
      onFrame: options.onFrame,
      onCommand: options.onCommand,
    };
    this.#control = new ControlQueue(env);
    this.#cursor = new CursorQueue(env);
  }

  #client(): DeviceContext["client"] {
    if (this.#ctx === undefined) throw new Error("the device is not running");
    return this.#ctx.client;
  }

  /** True between start and stop (blobs may be mapped). */
  get running(): boolean {
    return this.#ctx !== undefined;
  }

  /** The control queue (for tests that feed requests without a ring). */
  get control(): ControlQueue {
    return this.#control;
  }

  /** The cursor queue (for tests that feed requests without a ring). */
  get cursor(): CursorQueue {
    return this.#cursor;
  }

  /** The back-end's own view of blob `resourceId` (the pages the driver sees through shmid 1), or `undefined`. */
  blobBytes(resourceId: number): Uint8Array | undefined {
    const r = this.state.resources.get(resourceId);
    return r?.kind === "blob" ? r.blob.bytes.subarray(0, Number(r.size)) : undefined;
  }

  processQueue(ctx: QueueContext): Promise<void> {
    return ctx.index === 0 ? this.#control.process(ctx) : this.#cursor.process(ctx);
  }

  getConfig(offset: number, size: number): Uint8Array {
    if (offset + size > CONFIG_SIZE) throw new RangeError(`virtio-gpu config 0x${offset.toString(16)}+0x${size.toString(16)} exceeds ${CONFIG_SIZE} bytes`);
    return this.#config.slice(offset, offset + size);
  }

  /**
   * Only events_clear (offset 4) is writable: write-1-to-clear bits of events_read. A write may
   * cover more of the config (front-ends write the whole struct back); the read-only fields in it
   * are ignored, as a virtio device ignores them. A write that splits events_clear is refused.
   */
  setConfig(offset: number, data: Uint8Array): void {
    const end = offset + data.byteLength;
    if (offset < 0 || end > CONFIG_SIZE)
      throw new RangeError(`virtio-gpu config write 0x${offset.toString(16)}+${data.byteLength} exceeds ${CONFIG_SIZE} bytes`);
    if (offset > 4 || end < 8) {
      if (offset < 8 && end > 4) throw new RangeError(`virtio-gpu config write 0x${offset.toString(16)}+${data.byteLength} splits events_clear (4 bytes at 4)`);
      return; // read-only fields only
    }
    const cv = new DataView(this.#config.buffer);
    const clear = new DataView(data.buffer, data.byteOffset + 4 - offset, 4).getUint32(0, true);
    cv.setUint32(0, cv.getUint32(0, true) & ~clear, true);
  }

  shmemRegions(): readonly ShmemRegionSpec[] {
    return [{ shmid: HOST_VISIBLE_SHMID, size: this.shmSize }];
  }

  featuresAcked(features: bigint): void {
    this.#acked = features;
  }

  /** Starts; blobs mapped in a loaded device state are mapped again (SHMEM_MAP) first. @throws Error naming the blobs whose map failed (they are left unmapped). */
  async start(ctx: DeviceContext): Promise<void> {
    this.#ctx = ctx;
    this.#options.onLifecycle?.("start");
    await this.#restoreMappings();
  }

  /** SHMEM_MAP for every blob a loaded state had mapped, at its offset; one whose map fails is left unmapped. */
  async #restoreMappings(): Promise<void> {
    const failed: string[] = [];
    for (const r of this.state.resources.values()) {
      const m = r.kind === "blob" ? r.mapping : undefined;
      if (r.kind !== "blob" || m?.restore !== true) continue;
      try {
        await this.#mapper.map(m.offset, m.len, r.blob.fd);
        if (r.mapping === m) r.mapping = { offset: m.offset, len: m.len };
      } catch (err) {
        if (r.mapping === m) r.mapping = undefined;
        failed.push(`blob ${r.id} at 0x${m.offset.toString(16)}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    if (failed.length > 0) throw new Error(`restoring blob mappings: ${failed.join("; ")}`);
  }

  /**
   * DEVICE_STATE save (docs/protocol.md#device-state-transfer): resources with their pixels, guest backing and
   * blob bytes, blob mapping offsets, contexts, scanouts, the cursor and events_read (`device-state.ts`).
   */
  saveState(out: StateWriter): Promise<void> {
    return saveGpuState(this.state, new DataView(this.#config.buffer).getUint32(0, true), out);
  }

  /**
   * DEVICE_STATE load: reads and checks the whole state first, then replaces the current one (its
   * resources freed); the loaded blob mappings are mapped again at the next start.
   * @throws Error for a state this device does not accept (nothing changes then).
   */
  async loadState(input: StateReader): Promise<void> {
    const page = BigInt(pageSize());
    const s = await loadGpuState(input, {
      numScanouts: this.state.scanouts.length,
      shmSize: this.shmSize,
      blobAlignment: page,
      maxHostBytes: this.#options.maxHostBytes ?? DEFAULT_MAX_HOST_BYTES,
    });
    this.state.clear();
    for (const [id, r] of s.resources) this.state.resources.set(id, r);
    for (const [id, c] of s.contexts) this.state.contexts.set(id, c);
    s.scanouts.forEach((sc, i) => (this.state.scanouts[i] = sc));
    Object.assign(this.state.cursor, s.cursor);
    this.state.hostBytes = s.hostBytes;
    new DataView(this.#config.buffer).setUint32(0, s.eventsRead, true);
  }

  stop(): void {
    // The mappings stay: the front-end keeps them across a stop (a VM pause) and drops them only on
    // reset (docs/shmem.md#mapping-lifetime); after the next start the driver can still unmap them.
    this.#ctx = undefined;
    this.#options.onLifecycle?.("stop");
  }

  reset(): void {
    this.#ctx = undefined;
    this.#acked = 0n;
    this.state.clear();
    this.#config.fill(0, 0, 8);
    this.#options.onLifecycle?.("reset");
  }
}
