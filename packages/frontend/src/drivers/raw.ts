/**
 * A raw/generic driver: put given buffers on a given queue and return what comes back.
 * @module
 */
import type { Device } from "../device.js";
import type { StartOptions } from "../device-options.js";
import type { DriverQueue } from "../driver-queue.js";
import type { TransferResult } from "../driver-transfer.js";

/** A generic driver for any device type: the caller decides the features, queues and buffers. */
export class RawDriver {
  /** The device. */
  readonly device: Device;

  private constructor(device: Device) {
    this.device = device;
  }

  /** Starts the given queues with the given feature bits. @throws FrontendError from {@link Device.start}. */
  static async attach(device: Device, options: StartOptions = {}): Promise<RawDriver> {
    await device.start(options);
    return new RawDriver(device);
  }

  /** The started queue at `index`. @throws FrontendError `BAD_ARGUMENT`. */
  queue(index: number): DriverQueue {
    return this.device.queue(index);
  }

  /**
   * Puts `readable` (device-readable copies) then `writableLens` device-writable buffers on queue
   * `index` as one chain and returns `used.len` and the writable buffers' contents.
   * @throws FrontendError as {@link DriverQueue.transfer}.
   */
  submit(index: number, readable: readonly Uint8Array[], writableLens: readonly number[], timeoutMs?: number): Promise<TransferResult> {
    return this.device.queue(index).transfer(readable, writableLens, timeoutMs);
  }
}
