/**
 * A small Linux guest (Debian 12's kernel, `virtio_pci` + `virtio_gpu` modules, busybox) in QEMU
 * 11.1 (TCG) whose GPU is the sample back-end `vhostkit-gpu` (apps/gpu-backend), presented as
 * `vhost-user-test-device-pci,virtio-id=16,num_vqs=2,config_size=20`; the guest program
 * `fixtures/virtio-gpu-guest.c` built with the host's `gcc -static`; the expected pattern and blob
 * words it writes; and a PNG reader for the back-end's screenshots (node:zlib, no dependency).
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { inflateSync } from "node:zlib";
import { buildInitramfs, guestQemuArgs } from "@vhostkit/peers/guest";
import { peerCommand } from "@vhostkit/peers/peers";
import { LineProcess, withDeadline } from "./processes.js";
import { vhostUserGpuMachine } from "./qemu.js";

/** The repository root, found upwards from this module (under Node it is bundled next to the test file). */
function repoRoot(): string {
  for (let dir = dirname(fileURLToPath(import.meta.url)); ; dir = dirname(dir)) {
    if (existsSync(join(dir, "apps/gpu-backend/package.json"))) return dir;
    if (dirname(dir) === dir) throw new Error(`no repository root above ${fileURLToPath(import.meta.url)}`);
  }
}
const ROOT = repoRoot();
/** apps/gpu-backend. */
const GPU_APP = join(ROOT, "apps/gpu-backend");
const GUEST_C = join(ROOT, "tools/interop/test/fixtures/virtio-gpu-guest.c");

/** Display mode the back-end reports (and the guest program shows its pattern in). */
export const DISPLAY = { width: 640, height: 480 } as const;

/**
 * Builds `fixtures/virtio-gpu-guest.c` into `dir` with the host's `gcc -static` and returns the
 * binary. Throws at once, saying what to install, when gcc or the static C library is missing.
 */
function buildGuestProgram(dir: string): Uint8Array {
  const out = join(dir, "virtio-gpu-guest");
  const r = spawnSync("gcc", ["-static", "-O2", "-Wall", "-Wextra", "-Werror", "-o", out, GUEST_C], { encoding: "utf8" });
  if (r.error !== undefined || r.status !== 0) {
    throw new Error(`cannot build the guest program with \`gcc -static\` (install gcc and libc6-dev): ${r.error?.message ?? ""}${r.stderr ?? ""}`);
  }
  return readFileSync(out);
}

/** A guest running on vhostkit-gpu: both processes and the back-end's JSON event lines. */
export interface GpuGuest {
  /** vhostkit-gpu (`--events`); its stdout lines are JSON. */
  readonly gpu: LineProcess;
  /** QEMU; its stdout is the guest's serial console, its stdin the console's input. */
  readonly qemu: LineProcess;
  /** The back-end's event lines so far, parsed. */
  events(): GpuEvent[];
}

/** One `--events` line of vhostkit-gpu. */
export type GpuEvent = Record<string, unknown> & { readonly event: string };

/** Options of {@link withGpuGuest}. */
export interface GpuGuestOptions {
  /** Prefix of the temporary directory (socket, initramfs, guest program, screenshots in `shots/`). */
  readonly name: string;
  /** Shell script the guest runs once `virtio_gpu` is loaded; the guest program is `/bin/virtio-gpu-guest`. */
  readonly script: string;
}

/**
 * Builds the guest program, starts vhostkit-gpu (`--events --once --sealed-memory`, screenshots
 * into `<dir>/shots`, the {@link DISPLAY} mode), waits until it listens, boots the guest in QEMU
 * 11.1 (serial console on stdio, RAM a shared memfd) and runs `body`; whatever happens, stops both
 * and removes the directory. Under Node the back-end's dist/ is built first. Fails at once when a
 * peer set is not fetched.
 */
export async function withGpuGuest(o: GpuGuestOptions, body: (g: GpuGuest) => Promise<void>): Promise<void> {
  const [program, ...prefix] = peerCommand("sid", "qemu-system-x86_64");
  if (typeof (globalThis as { Bun?: unknown }).Bun === "undefined") {
    const b = spawnSync(join(ROOT, "node_modules/.bin/tsc"), ["-b", GPU_APP], { encoding: "utf8" });
    if (b.status !== 0) throw new Error(`tsc -b apps/gpu-backend failed:\n${b.stdout}${b.stderr}`);
  }
  const dir = mkdtempSync(join(tmpdir(), `${o.name}-`));
  let gpu: LineProcess | undefined;
  let qemu: LineProcess | undefined;
  try {
    const files = { "/bin/virtio-gpu-guest": buildGuestProgram(dir) };
    const image = buildInitramfs({ out: join(dir, "initramfs.cpio"), modules: ["virtio_pci", "virtio_gpu"], script: o.script, files });
    const socket = join(dir, "gpu.sock");
    const shots = join(dir, "shots");
    const size = ["--width", String(DISPLAY.width), "--height", String(DISPLAY.height)];
    gpu = new LineProcess(process.execPath, [
      join(GPU_APP, "bin/vhostkit-gpu.mjs"),
      "--socket",
      socket,
      "--events",
      "--once",
      "--sealed-memory",
      "--screenshot-dir",
      shots,
      ...size,
    ]);
    await withDeadline(gpu.line('"event":"listening"'), 20_000, "vhostkit-gpu to listen");
    // No blinking fbcon cursor: the console is flushed only when its text changes.
    qemu = new LineProcess(program as string, [...prefix, ...vhostUserGpuMachine(socket, 256), ...guestQemuArgs(image, "vt.global_cursor_default=0")], {
      stdin: true,
    });
    const g = gpu;
    await body({ gpu: g, qemu, events: () => g.lines.filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as GpuEvent) });
  } finally {
    await qemu?.stop();
    await gpu?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The guest's console so far, for assertion messages. */
export function consoleText(g: GpuGuest): string {
  return `guest console:\n${g.qemu.lines.join("\n")}\nQEMU stderr:\n${g.qemu.stderr}\nvhostkit-gpu stderr:\n${g.gpu.stderr}`;
}

/** Pixel (x, y) of the guest program's scanout pattern as 0xRRGGBB (`pattern_pixel` in the C source). */
export function patternPixel(x: number, y: number): number {
  const r = x & 255;
  const g = y & 255;
  const b = ((x >> 8) << 6) | ((y >> 8) << 5) | ((x ^ y) & 31);
  return (r << 16) | (g << 8) | b;
}

/** Word `i` the guest program writes into the blob (`guest_word` in the C source). */
export function guestWord(i: number): number {
  return (Math.imul(i, 0x01000193) ^ 0xa5a5a5a5) >>> 0;
}

/** An 8-bit RGBA image. */
export interface RgbaImage {
  readonly width: number;
  readonly height: number;
  /** width × height × 4 bytes, row-major. */
  readonly rgba: Uint8Array;
}

/**
 * Decodes an 8-bit RGBA, non-interlaced PNG (what vhostkit-gpu's screenshots are): the IDAT
 * stream inflated with node:zlib, then each row unfiltered (None, Sub, Up, Average, Paeth).
 * Throws on anything else.
 */
export function decodePng(png: Uint8Array): RgbaImage {
  const b = Buffer.from(png.buffer, png.byteOffset, png.byteLength);
  if (b.readUInt32BE(0) !== 0x89504e47 || b.readUInt32BE(4) !== 0x0d0a1a0a) throw new Error("not a PNG");
  let width = 0;
  let height = 0;
  const idat: Buffer[] = [];
  for (let at = 8; at < b.length; ) {
    const len = b.readUInt32BE(at);
    const type = b.toString("latin1", at + 4, at + 8);
    const data = b.subarray(at + 8, at + 8 + len);
    if (type === "IHDR") {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      const [depth, colour, , , interlace] = [data[8], data[9], data[10], data[11], data[12]];
      if (depth !== 8 || colour !== 6 || interlace !== 0)
        throw new Error(`PNG depth ${depth} colour type ${colour} interlace ${interlace}: only 8-bit RGBA, not interlaced`);
    } else if (type === "IDAT") idat.push(data);
    else if (type === "IEND") break;
    at += 12 + len;
  }
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * 4;
  if (raw.length !== height * (stride + 1)) throw new Error(`PNG data of ${raw.length} bytes for ${width}x${height}`);
  const out = new Uint8Array(height * stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)] as number;
    const src = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const row = y * stride;
    for (let i = 0; i < stride; i++) {
      const a = i >= 4 ? (out[row + i - 4] as number) : 0;
      const up = y > 0 ? (out[row - stride + i] as number) : 0;
      const c = y > 0 && i >= 4 ? (out[row - stride + i - 4] as number) : 0;
      const s = src[i] as number;
      let v: number;
      if (filter === 0) v = s;
      else if (filter === 1) v = s + a;
      else if (filter === 2) v = s + up;
      else if (filter === 3) v = s + ((a + up) >> 1);
      else if (filter === 4) {
        const p = a + up - c;
        const [pa, pb, pc] = [Math.abs(p - a), Math.abs(p - up), Math.abs(p - c)];
        v = s + (pa <= pb && pa <= pc ? a : pb <= pc ? up : c);
      } else throw new Error(`PNG row ${y}: filter ${filter}`);
      out[row + i] = v & 0xff;
    }
  }
  return { width, height, rgba: out };
}
