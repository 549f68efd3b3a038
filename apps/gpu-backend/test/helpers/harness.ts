/**
 * Device-logic harness: a {@link GpuDevice} driven through real split rings in an
 * {@link ArrayGuestMemory}, no sockets. A fake back-end client records SHMEM_MAP/UNMAP. Declare it
 * with `using`: the host blobs a test creates are freed when it ends, passed or failed.
 */
import type { BackendClient, DeviceContext, QueueContext, ShmemMapArgs, ShmemUnmapArgs } from "@vhostkit/backend";
import type { GuestAddress } from "@vhostkit/regions";
import { SplitQueue } from "@vhostkit/virtqueue";
import { SplitDriver } from "@vhostkit/virtqueue/driver";
import { ArrayGuestMemory } from "@vhostkit/virtqueue/testing";
import { GpuDevice, type GpuDeviceOptions } from "../../src/device.js";
import type { CommandEvent } from "../../src/queues/command.js";
import type { Frame } from "../../src/resources.js";
import { GpuFeature } from "../../src/virtio-gpu.js";

/** Guest RAM size of the harness. */
export const RAM_SIZE = 8 << 20;
const QUEUE_SIZE = 64;

interface Ring {
  readonly driver: SplitDriver<number>;
  readonly queue: SplitQueue;
}

/** A recorded back-end request. */
export type MapCall = { readonly kind: "map"; readonly args: ShmemMapArgs; readonly fd: number } | { readonly kind: "unmap"; readonly args: ShmemUnmapArgs };

/** The fake back-end channel: records calls; `fail` makes the next call reject (with `failWith`, else a plain Error). */
export class FakeClient {
  readonly calls: MapCall[] = [];
  fail = false;
  failWith: Error | undefined;
  canMap = true;
  shmemMap(args: ShmemMapArgs, fd: number): Promise<void> {
    this.calls.push({ kind: "map", args, fd });
    return this.#answer();
  }
  shmemUnmap(args: ShmemUnmapArgs): Promise<void> {
    this.calls.push({ kind: "unmap", args });
    return this.#answer();
  }
  #answer(): Promise<void> {
    if (!this.fail) return Promise.resolve();
    this.fail = false;
    const e = this.failWith ?? new Error("front-end answered status 1");
    this.failWith = undefined;
    return Promise.reject(e);
  }
}

/** A device with both queues set up in guest RAM, started (running) unless `start: false`. */
export class Harness {
  readonly memory = new ArrayGuestMemory([{ guestAddr: 0n, size: RAM_SIZE }]);
  readonly client = new FakeClient();
  readonly frames: Frame[] = [];
  readonly events: CommandEvent[] = [];
  readonly device: GpuDevice;
  readonly #rings: Ring[] = [];
  #next = 0x10000n; // bump allocator for request buffers, above the rings

  /** `features`: what the driver acknowledged (default: all offered but VIRGL and CONTEXT_INIT). */
  constructor(options: GpuDeviceOptions & { readonly start?: boolean; readonly features?: bigint } = {}) {
    this.device = new GpuDevice({ onFrame: (f) => void this.frames.push(f), onCommand: (e) => void this.events.push(e), ...options });
    for (let i = 0; i < 2; i++) {
      const base = BigInt(i * 0x4000);
      const addresses = { desc: base, avail: base + 0x400n, used: base + 0x1000n };
      const driver = new SplitDriver<number>({ size: QUEUE_SIZE, memory: this.memory, addresses });
      const queue = new SplitQueue({ size: QUEUE_SIZE, memory: this.memory, addresses });
      queue.start(0);
      this.#rings.push({ driver, queue });
    }
    // By default the driver acks what the `vhost-user-device gpu` driver acks (no VIRGL: host blobs
    // without a context); a test of the Linux driver's view passes `features` with VIRGL.
    this.device.featuresAcked(options.features ?? this.device.features & ~(GpuFeature.VIRGL | GpuFeature.CONTEXT_INIT));
    if (options.start !== false) this.start();
  }

  /** DRIVER_OK: the device runs and may map. */
  start(): void {
    const ctx: DeviceContext = { features: this.device.features, memory: this.memory, client: this.client as unknown as BackendClient };
    this.device.start(ctx);
  }

  /** Allocates `len` bytes of guest RAM (16-aligned), optionally filled. */
  alloc(len: number, fill?: Uint8Array): GuestAddress {
    const a = this.#next;
    this.#next = (a + BigInt(len) + 15n) & ~15n;
    if (this.#next > BigInt(RAM_SIZE)) throw new RangeError("harness RAM exhausted");
    if (fill !== undefined) this.memory.regions[0]?.bytes.set(fill, Number(a));
    return a as GuestAddress;
  }

  /** Bytes of guest RAM at `addr`. */
  ram(addr: bigint, len: number): Uint8Array {
    const bytes = this.memory.regions[0]?.bytes;
    if (bytes === undefined) throw new Error("the harness has no guest RAM region");
    return bytes.subarray(Number(addr), Number(addr) + len);
  }

  /**
   * Puts one chain on queue `index` — `readable` buffers (each its own descriptor) then one
   * writable buffer of `respLen` bytes (none when 0) — lets the device process the queue and
   * returns what it wrote (used.len bytes).
   */
  async submit(index: number, readable: readonly Uint8Array[], respLen = 1024): Promise<Uint8Array> {
    const ring = this.#rings[index] as Ring;
    const r = readable.map((b) => ({ addr: this.alloc(b.byteLength, b), len: b.byteLength }));
    const w = respLen > 0 ? [{ addr: this.alloc(respLen), len: respLen }] : [];
    ring.driver.add(r, w, 1);
    ring.driver.publish();
    const ctx: QueueContext = {
      index,
      queue: ring.queue,
      memory: this.memory,
      notify: () => void ring.queue.publishUsed(),
      fail: (error) => {
        throw error; // the GPU device never breaks a queue itself; a test would see this
      },
    };
    await this.device.processQueue(ctx);
    ring.queue.publishUsed();
    const used = ring.driver.collectUsed();
    if (used.length !== 1) throw new Error(`expected one used buffer, got ${used.length}`);
    const len = (used[0] as { len: number }).len;
    return w.length === 0 ? new Uint8Array(0) : this.ram(w[0]!.addr, len).slice();
  }

  /** A controlq command; returns the response. */
  control(req: Uint8Array, respLen?: number): Promise<Uint8Array> {
    return this.submit(0, [req], respLen);
  }

  /** Resets the device, which frees every resource (host blobs: their mappings and memfds); for `using`. */
  [Symbol.dispose](): void {
    this.device.reset();
  }
}
