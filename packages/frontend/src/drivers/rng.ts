/**
 * virtio-rng driver (docs/devices.md#virtio-rng; device id 4): device-writable buffers only.
 * @module
 */
import { FrontendError } from "../errors.js";
import type { Device } from "../device.js";
import type { DriverQueue } from "../driver-queue.js";

/**
 * A virtio-rng driver on the request queue (0) of a {@link Device}: posts device-writable buffers
 * and returns the `used.len` bytes the device filled.
 */
export class RngDriver {
  /** The device. */
  readonly device: Device;
  /** The request queue. */
  readonly queue: DriverQueue;

  private constructor(device: Device, queue: DriverQueue) {
    this.device = device;
    this.queue = queue;
  }

  /** Starts queue 0 (no device features). @throws FrontendError from {@link Device.start}. */
  static async attach(device: Device): Promise<RngDriver> {
    const [q] = await device.start({ queues: [0] });
    return new RngDriver(device, q as DriverQueue);
  }

  /**
   * Reads exactly `n` random bytes, posting buffers of at most 64 KiB until filled.
   * @throws FrontendError `BAD_ARGUMENT`, `PROTOCOL` (the device claims more than the buffer), `DEVICE_FAILED`, `TIMEOUT`.
   */
  async read(n: number): Promise<Uint8Array> {
    if (!Number.isInteger(n) || n < 1) throw new FrontendError("BAD_ARGUMENT", `rng read of ${n} bytes`, { actual: n });
    const out = new Uint8Array(n);
    let done = 0;
    let empty = 0;
    while (done < n) {
      const want = Math.min(65536, n - done);
      const r = await this.queue.transfer([], [want]);
      if (r.len > want)
        throw new FrontendError("PROTOCOL", `virtio-rng: used.len ${r.len} exceeds the buffer ${want}`, { request: "rng", expected: want, actual: r.len });
      if (r.len === 0 && ++empty > 16) throw new FrontendError("IO_ERROR", "virtio-rng: device keeps returning no data", { request: "rng" });
      out.set((r.buffers[0] as Uint8Array).subarray(0, r.len), done);
      done += r.len;
    }
    return out;
  }
}
