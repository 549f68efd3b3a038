/** The guest kernel of the fetched `guest` set (tools/peers/fetch.sh guest). */
export interface GuestKernel {
  /** Kernel release, e.g. `6.1.0-57-amd64`. */
  readonly version: string;
  /** Path of the bzImage. */
  readonly kernel: string;
  /** The release's module tree. */
  readonly modulesDir: string;
  /** Path of the static busybox. */
  readonly busybox: string;
}
/** A kernel module and its file. */
export interface KernelModule {
  /** Module name (underscores). */
  readonly name: string;
  /** Path of its `.ko`. */
  readonly file: string;
}
/** Options of {@link buildInitramfs}. */
export interface InitramfsOptions {
  /** Where to write the archive. */
  readonly out: string;
  /** Modules to load at boot (their dependencies are added and loaded first). */
  readonly modules?: readonly string[];
  /** Shell script the guest runs after loading the modules. */
  readonly script: string;
  /** Extra files: path inside the guest -> contents (executable under /bin). */
  readonly files?: Readonly<Record<string, string | Uint8Array>>;
}
/** What {@link buildInitramfs} wrote. */
export interface GuestImage {
  /** Path of the kernel. */
  readonly kernel: string;
  /** Path of the initramfs. */
  readonly initrd: string;
  /** Modules in load order. */
  readonly modules: readonly string[];
  /** Kernel release. */
  readonly kernelVersion: string;
}
/** The fetched guest kernel; throws PeerMissingError at once when the `guest` set is not fetched. */
export function guestKernel(): GuestKernel;
/** `names` and their dependencies, dependencies first; throws when one is not in the tree. */
export function resolveModules(modulesDir: string, names: readonly string[]): KernelModule[];
/**
 * Writes a newc initramfs: busybox, the modules (loaded in order by /init), `files`, and an /init
 * that prints `VHOSTKIT-GUEST-READY`, runs `script`, prints `VHOSTKIT-GUEST-EXIT <status>` and
 * powers off. A module that fails to load prints `VHOSTKIT-GUEST-INSMOD-FAILED <name>`.
 */
export function buildInitramfs(opts: InitramfsOptions): GuestImage;
/** QEMU arguments that boot `image` with its console on a serial port on stdio. */
export function guestQemuArgs(image: Pick<GuestImage, "kernel" | "initrd">, append?: string): string[];
/** Whether the `guest` set is fetched. */
export function guestReady(): boolean;
