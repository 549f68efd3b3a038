// Runtime-neutral (Node and Bun) small Linux guests for QEMU: Debian 12's kernel and a static
// busybox, fetched by `fetch.sh guest`, and an initramfs built here (newc cpio, no root, no cpio
// tool) holding busybox, the kernel modules asked for (with their dependencies, in load order) and
// an /init that loads them, runs a script and powers off. Types live in guest.d.mts.
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { peersCacheDir, requirePeer } from "./peers.mjs";

/** The guest kernel of the fetched `guest` set. */
export function guestKernel() {
  requirePeer("guest");
  const root = join(peersCacheDir(), "guest", "root");
  const version = readdirSync(join(root, "lib/modules")).sort().at(-1);
  if (version === undefined) throw new Error(`no kernel modules under ${root}/lib/modules`);
  return { version, kernel: join(root, "boot", `vmlinuz-${version}`), modulesDir: join(root, "lib/modules", version), busybox: join(root, "bin/busybox") };
}

/** Every `.ko` under `dir`, by module name (`-` and `_` are the same in module names). */
function moduleFiles(dir) {
  const out = new Map();
  const walk = (d) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith(".ko")) out.set(e.name.slice(0, -3).replaceAll("-", "_"), p);
    }
  };
  walk(dir);
  return out;
}

/** The `depends=` list of a module's .modinfo section. */
function moduleDepends(file) {
  const bytes = readFileSync(file);
  const at = bytes.indexOf("\0depends=");
  if (at < 0) return [];
  const end = bytes.indexOf(0, at + 1);
  const list = bytes.subarray(at + "\0depends=".length, end).toString("latin1");
  return list === "" ? [] : list.split(",").map((m) => m.replaceAll("-", "_"));
}

/**
 * `names` and everything they depend on, dependencies first (the order insmod needs).
 * Throws when a module does not exist in the kernel's tree.
 */
export function resolveModules(modulesDir, names) {
  const files = moduleFiles(modulesDir);
  const ordered = [];
  const seen = new Set();
  const visit = (name, from) => {
    const n = name.replaceAll("-", "_");
    if (seen.has(n)) return;
    seen.add(n);
    const file = files.get(n);
    if (file === undefined) throw new Error(`kernel module ${n}${from ? ` (needed by ${from})` : ""} is not in ${modulesDir}`);
    for (const d of moduleDepends(file)) visit(d, n);
    ordered.push({ name: n, file });
  };
  for (const n of names) visit(n);
  return ordered;
}

/** A newc ("070701") cpio archive writer: what the kernel unpacks as an initramfs. */
class Cpio {
  #parts = [];
  #ino = 1;

  #entry(name, mode, data = Buffer.alloc(0)) {
    const field = (v) => v.toString(16).padStart(8, "0");
    const nameBytes = Buffer.from(`${name}\0`, "utf8");
    const header = [
      "070701",
      field(this.#ino++),
      field(mode),
      field(0),
      field(0),
      field(1),
      field(0),
      field(data.length),
      field(0),
      field(0),
      field(0),
      field(0),
      field(nameBytes.length),
      field(0),
    ].join("");
    this.#parts.push(
      Buffer.from(header, "latin1"),
      nameBytes,
      Buffer.alloc((4 - ((110 + nameBytes.length) % 4)) % 4),
      data,
      Buffer.alloc((4 - (data.length % 4)) % 4),
    );
  }

  dir(name) {
    this.#entry(name, 0o040755);
  }

  file(name, data, mode = 0o644) {
    this.#entry(name, 0o100000 | mode, Buffer.from(data));
  }

  symlink(name, target) {
    this.#entry(name, 0o120777, Buffer.from(target, "utf8"));
  }

  bytes() {
    this.#entry("TRAILER!!!", 0);
    return Buffer.concat(this.#parts);
  }
}

/**
 * Writes an initramfs to `out`: busybox, the `modules` (dependencies added, loaded in order by
 * /init), the extra `files` (path inside the guest -> contents; executable when the path is under
 * /bin), and an /init that mounts /proc, /sys and /dev, loads the modules, runs `script` with
 * /bin/sh and powers the guest off. Lines the harness can wait for: `VHOSTKIT-GUEST-READY` before
 * the script, `VHOSTKIT-GUEST-EXIT <status>` after it; a module that fails to load prints
 * `VHOSTKIT-GUEST-INSMOD-FAILED <name>`.
 */
export function buildInitramfs({ out, modules = [], script, files = {} }) {
  const k = guestKernel();
  const mods = resolveModules(k.modulesDir, modules);
  const cpio = new Cpio();
  for (const d of ["bin", "dev", "proc", "sys", "tmp", "mnt", "lib", "lib/modules", "etc"]) cpio.dir(d);
  cpio.file("bin/busybox", readFileSync(k.busybox), 0o755);
  cpio.symlink("bin/sh", "busybox");
  for (const m of mods) cpio.file(`lib/modules/${m.name}.ko`, readFileSync(m.file));
  for (const [path, data] of Object.entries(files)) cpio.file(path.replace(/^\//, ""), data, path.startsWith("/bin/") ? 0o755 : 0o644);
  cpio.file("etc/script.sh", script);
  const init = [
    "#!/bin/sh",
    "/bin/busybox --install -s /bin",
    "mount -t proc proc /proc",
    "mount -t sysfs sysfs /sys",
    "mount -t devtmpfs devtmpfs /dev",
    ...mods.map((m) => `insmod /lib/modules/${m.name}.ko || echo "VHOSTKIT-GUEST-INSMOD-FAILED ${m.name}"`),
    "echo VHOSTKIT-GUEST-READY",
    "sh /etc/script.sh",
    'echo "VHOSTKIT-GUEST-EXIT $?"',
    // poweroff -f is immediate: give the tty a moment to push the last lines to the serial port.
    "sync",
    "sleep 1",
    "poweroff -f",
    "",
  ].join("\n");
  cpio.file("init", init, 0o755);
  writeFileSync(out, cpio.bytes());
  return { kernel: k.kernel, initrd: out, modules: mods.map((m) => m.name), kernelVersion: k.version };
}

/** QEMU arguments that boot the guest kernel with `initrd` on a serial console on stdio. */
export function guestQemuArgs({ kernel, initrd }, append = "") {
  return [
    "-kernel",
    kernel,
    "-initrd",
    initrd,
    "-append",
    `console=ttyS0 panic=-1 rdinit=/init loglevel=4 ${append}`.trim(),
    "-serial",
    "stdio",
    "-display",
    "none",
    "-nodefaults",
    "-no-reboot",
  ];
}

/** Whether the `guest` set is fetched (kernel and busybox present). */
export function guestReady() {
  try {
    const k = guestKernel();
    return existsSync(k.kernel) && statSync(k.busybox).isFile();
  } catch {
    return false;
  }
}
