/** Test helpers: /proc/self/maps and /proc/self/fd inspection, real memfds. */
import { fstatSync, readdirSync, readFileSync } from "node:fs";
import { ftruncate, memfdCreate, MFD, sealedMemfd } from "@vhostkit/transport/sys";

/** One VMA of /proc/self/maps. */
export interface Vma {
  readonly start: bigint;
  readonly end: bigint;
  readonly perms: string;
}

/** Every VMA of this process. */
export function readMaps(): Vma[] {
  return readFileSync("/proc/self/maps", "utf8")
    .split("\n")
    .filter((l) => l.length > 0)
    .map((l) => {
      const [range, perms] = l.split(/\s+/);
      const [s, e] = range!.split("-");
      return { start: BigInt(`0x${s}`), end: BigInt(`0x${e}`), perms: perms! };
    });
}

/**
 * The VMAs intersecting `[start, start + len)`, clipped to it, in address order. Adjacent VMAs with
 * the same permissions are merged (the kernel may or may not merge them).
 */
export function vmasIn(start: bigint, len: bigint, maps: Vma[] = readMaps()): Vma[] {
  const end = start + len;
  const out: Vma[] = [];
  for (const v of maps) {
    if (v.end <= start || v.start >= end) continue;
    const c = { start: v.start < start ? start : v.start, end: v.end > end ? end : v.end, perms: v.perms };
    const last = out[out.length - 1];
    if (last !== undefined && last.end === c.start && last.perms === c.perms) out[out.length - 1] = { ...last, end: c.end };
    else out.push(c);
  }
  return out;
}

/** `vmasIn` as compact strings relative to `start`: `"0+1000:---p"`. */
export function layout(start: bigint, len: bigint): string[] {
  return vmasIn(start, len).map((v) => `${(v.start - start).toString(16)}+${(v.end - v.start).toString(16)}:${v.perms}`);
}

/** Number of open fds of this process. */
export function fdCount(): number {
  return readdirSync("/proc/self/fd").length;
}

/** A new memfd of `size` bytes, sealed against resizing unless `sealed` is false (caller owns it). */
export function memfd(size: bigint, name = "test", sealed = true): number {
  const fd = sealed ? sealedMemfd(name, size) : memfdCreate(name, MFD.CLOEXEC);
  if (fd < 0 || (!sealed && ftruncate(fd, size) !== 0)) throw new Error("memfd set-up failed");
  return fd;
}

/** True when `fd` is open in this process. */
export function fdOpen(fd: number): boolean {
  // fstat allocates no fd (reading /proc/self/fd would reuse the number just closed).
  try {
    fstatSync(fd);
    return true;
  } catch {
    return false;
  }
}

/** Number of VMAs of this process that map a memfd called `name`. */
export function memfdVmas(name: string): number {
  return readFileSync("/proc/self/maps", "utf8")
    .split("\n")
    .filter((l) => l.includes(`/memfd:${name} `)).length;
}

/**
 * The `VmFlags` of every VMA of this process that intersects `[start, start + len)` (from
 * /proc/self/smaps), e.g. `["mr", "mw", "me", "nr"]`; `nr` is MAP_NORESERVE, `rd`/`wr`/`ex` the
 * protections. The kernel may merge a range with equal neighbours, so a VMA can begin before it.
 */
export function vmFlagsWithin(start: bigint, len: bigint): string[][] {
  const out: string[][] = [];
  let inside = false;
  for (const line of readFileSync("/proc/self/smaps", "utf8").split("\n")) {
    const head = /^([0-9a-f]+)-([0-9a-f]+) /.exec(line);
    if (head !== null) inside = BigInt(`0x${head[1]}`) < start + len && BigInt(`0x${head[2]}`) > start;
    else if (inside && line.startsWith("VmFlags:")) out.push(line.slice("VmFlags:".length).trim().split(/\s+/));
  }
  return out;
}
