/**
 * One back-end for the length of a command: a guest, the device negotiated on it, and both closed
 * afterwards (the device first, so that the back-end sees an orderly reset), whatever happened.
 */
import { Guest, type Device, type DeviceOptions } from "@vhostkit/frontend";

/** Opens a device with `options`, runs `use` on it, then closes the device and the guest. */
export async function withDevice<T>(options: DeviceOptions, use: (device: Device) => Promise<T>): Promise<T> {
  const guest = new Guest();
  try {
    const device = await guest.addDevice(options);
    const result = await use(device);
    await device.close();
    return result;
  } finally {
    await guest.close();
  }
}
