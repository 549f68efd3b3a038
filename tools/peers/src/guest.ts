/**
 * Small Linux guests for QEMU (Debian 12's kernel and a static busybox in an initramfs built without
 * root). The implementation is the runtime-neutral `guest.mjs`.
 */
export { buildInitramfs, guestKernel, guestQemuArgs, guestReady, resolveModules } from "./guest.mjs";
export type { GuestImage, GuestKernel, InitramfsOptions, KernelModule } from "./guest.mjs";
