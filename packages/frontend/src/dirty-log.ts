/**
 * Dirty page logging, front-end side (docs/protocol.md#dirty-page-logging): the log bitmap a
 * front-end hands to a back-end for live migration, and the requests that turn logging on and off.
 * @module
 */
import type { GuestRam } from "@vhostkit/regions";
import { EventFd } from "@vhostkit/transport";
import { closeFd, describeErrno, MAP, mmapOrErrno, munmap, nativeView, pointerAt, PROT, sealedMemfd } from "@vhostkit/transport/sys";
import { VirtioFeature, VRING_F_LOG } from "@vhostkit/wire";
import type { DriverQueue } from "./driver-queue.js";
import { FrontendError } from "./errors.js";
import type { Frontend } from "./frontend.js";

/** Bytes of guest memory one log bit stands for (`VHOST_LOG_PAGE`). */
export const LOG_PAGE_SIZE = 4096;

/** Bits per log word: the bitmap is sized in whole u64 words, as QEMU sizes it. */
const WORD_BITS = 64n;

/**
 * Bytes of log bitmap for guest memory that ends at guest-physical `memoryEnd` (exclusive): one bit
 * per 4 KiB page from address 0, rounded up to whole u64 words; at least one word.
 */
export function dirtyLogSize(memoryEnd: bigint): bigint {
  const pages = (memoryEnd + BigInt(LOG_PAGE_SIZE) - 1n) / BigInt(LOG_PAGE_SIZE);
  const words = (pages + WORD_BITS - 1n) / WORD_BITS;
  return (words > 0n ? words : 1n) * 8n;
}

/**
 * The end (exclusive) of guest RAM in guest-physical space: what a log must cover. Device windows
 * (VIRTIO Shared Memory Regions) are not guest RAM and are not logged.
 */
export function ramEnd(ram: GuestRam): bigint {
  let end = 0n;
  for (const r of ram.memoryTable()) if (r.guestPhysAddr + r.memorySize > end) end = r.guestPhysAddr + r.memorySize;
  return end;
}

/**
 * One dirty page log: a sealed memfd (`F_SEAL_SHRINK|F_SEAL_GROW`, so the back-end's mapping can
 * never fault) of {@link dirtyLogSize} bytes mapped here, and the eventfd SET_LOG_FD hands over
 * when asked for ({@link DirtyLogOptions.sendLogFd}).
 * The back-end sets bits concurrently with atomic operations; {@link DirtyPageLog.takeDirtyPages}
 * takes them with one atomic exchange per 32-bit word, so no mark is lost between the read and
 * the clear. Owns the memfd, the mapping and the eventfd until {@link DirtyPageLog.dispose}.
 */
export class DirtyPageLog implements Disposable {
  /** Bytes of bitmap (SET_LOG_BASE's `mmap_size`). */
  readonly size: bigint;
  /** The eventfd sent with SET_LOG_FD when {@link DirtyLogOptions.sendLogFd} is set (a back-end may signal it after marking). */
  readonly eventFd: EventFd;
  #fd: number;
  readonly #addr: bigint;
  #words: Uint32Array | undefined;

  private constructor(fd: number, addr: bigint, size: bigint, eventFd: EventFd) {
    this.#fd = fd;
    this.#addr = addr;
    this.size = size;
    this.eventFd = eventFd;
    // SAFETY: the view covers exactly the mapping (a page-aligned address, size a multiple of 8) and is dropped before the munmap.
    this.#words = new Uint32Array(nativeView(pointerAt(addr), Number(size)));
  }

  /**
   * Creates a zeroed log for guest memory ending at `memoryEnd` (exclusive).
   * @throws FrontendError `OUT_OF_MEMORY` when the memfd, the mapping or the eventfd cannot be made.
   */
  static create(memoryEnd: bigint): DirtyPageLog {
    const size = dirtyLogSize(memoryEnd);
    const fd = sealedMemfd("vhostkit-dirty-log", size);
    if (fd < 0) throw new FrontendError("OUT_OF_MEMORY", `dirty log of 0x${size.toString(16)} bytes: memfd: ${describeErrno(-fd)}`, { expected: size });
    const r = mmapOrErrno(0n, Number(size), PROT.READ | PROT.WRITE, MAP.SHARED, fd, 0n);
    if (!r.ok) {
      closeFd(fd);
      throw new FrontendError("OUT_OF_MEMORY", `dirty log of 0x${size.toString(16)} bytes: mmap: ${describeErrno(r.errno)}`, { expected: size });
    }
    let eventFd: EventFd;
    try {
      eventFd = EventFd.create();
    } catch (err) {
      munmap(r.addr, Number(size));
      closeFd(fd);
      throw new FrontendError("OUT_OF_MEMORY", "dirty log: eventfd", {}, { cause: err });
    }
    return new DirtyPageLog(fd, r.addr, size, eventFd);
  }

  /** The log's memfd, **borrowed** (SET_LOG_BASE sends a copy). @throws FrontendError `CLOSED` after dispose. */
  get fd(): number {
    if (this.#fd < 0) throw new FrontendError("CLOSED", "dirty log disposed");
    return this.#fd;
  }

  /**
   * Reads and clears the log: the guest-physical addresses of the pages marked since the last
   * call, ascending, each a multiple of {@link LOG_PAGE_SIZE}. Empty after dispose.
   */
  takeDirtyPages(): number[] {
    const words = this.#words;
    const out: number[] = [];
    if (words === undefined) return out;
    for (let i = 0; i < words.length; i++) {
      if (Atomics.load(words, i) === 0) continue;
      const bits = Atomics.exchange(words, i, 0);
      // Little-endian: bit b of word i is bit (b % 8) of byte 4i + b / 8, that is page 32i + b.
      for (let b = 0; b < 32; b++) if (((bits >>> b) & 1) === 1) out.push((i * 32 + b) * LOG_PAGE_SIZE);
    }
    return out;
  }

  /** Unmaps the log and closes its memfd and eventfd (the back-end keeps its own mapping). Idempotent. */
  dispose(): void {
    if (this.#words === undefined) return;
    this.#words = undefined;
    // SAFETY: the only view was dropped above; `#addr` maps `size` bytes of ours.
    munmap(this.#addr, Number(this.size));
    closeFd(this.#fd);
    this.#fd = -1;
    this.eventFd.close();
  }

  /** {@link DirtyPageLog.dispose}. */
  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** How `Device.startDirtyLog` turns logging on. */
export interface DirtyLogOptions {
  /**
   * Send SET_LOG_FD with the log's eventfd after SET_LOG_BASE. Default: off, as QEMU never sends
   * it and some back-ends (virtiofsd 1.14) close the connection on it
   * (docs/protocol.md#dirty-page-logging).
   */
  readonly sendLogFd?: boolean;
}

/**
 * Turns logging on with `log` (SET_LOG_BASE with its memfd, SET_LOG_FD with its eventfd only when
 * `sendLogFd`, SET_FEATURES `features | LOG_ALL`, then SET_VRING_ADDR with VHOST_VRING_F_LOG for each started
 * queue, the same addresses) or off with `undefined` (SET_FEATURES `features`, SET_VRING_ADDR
 * without the flag), in QEMU's order.
 * @throws FrontendError as {@link Frontend.call} / {@link Frontend.ack}.
 * @internal
 */
export async function sendDirtyLogging(
  fe: Frontend,
  ram: GuestRam,
  queues: Iterable<DriverQueue>,
  features: bigint,
  log: DirtyPageLog | undefined,
  sendLogFd = false,
): Promise<void> {
  if (log !== undefined) {
    await fe.call("SET_LOG_BASE", { mmapSize: log.size, mmapOffset: 0n }, [log.fd]);
    if (sendLogFd) await fe.ack("SET_LOG_FD", undefined, [log.eventFd.fd]);
  }
  await fe.setFeatures(log === undefined ? features : features | VirtioFeature.LOG_ALL);
  for (const q of queues) await fe.setVringAddr(vringAddr(ram, q, log !== undefined));
}

/** SET_VRING_ADDR of `q`: synthetic user addresses of its rings in `ram`, `log_guest_addr` its used ring (packed: device area). @internal */
export function vringAddr(ram: GuestRam, q: DriverQueue, logging: boolean) {
  return {
    index: q.index,
    flags: logging ? VRING_F_LOG : 0,
    descAddr: ram.userAddressOf(q.rings.desc),
    usedAddr: ram.userAddressOf(q.rings.used),
    availAddr: ram.userAddressOf(q.rings.avail),
    logAddr: q.rings.used,
  };
}
