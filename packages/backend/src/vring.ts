/**
 * One vring of a connection as the ring runner keeps it (`ring-runner.ts`): what the front-end
 * configured (size, addresses, base, eventfds, enable), where its handler stands, and the dirty-log
 * marks of the parts the device writes (docs/protocol.md#dirty-page-logging). Internal to the package.
 * @module
 */
import type { MemoryTable } from "@vhostkit/regions";
import type { EventFd } from "@vhostkit/transport";
import type { DeviceQueue, DirtyLogger, RingAddresses } from "@vhostkit/virtqueue";
import { guestAddressOfUser } from "./ring-layout.js";

/** One vring: what the front-end configured, and where its handler stands. Only the runner touches it. */
export class Vring {
  readonly index: number;
  /** SET_VRING_NUM (0 = not set). */
  size = 0;
  /** SET_VRING_ADDR (front-end virtual addresses). */
  addresses: RingAddresses | undefined;
  /** SET_VRING_ADDR's `log_guest_addr` when it set VHOST_VRING_F_LOG: the guest-physical address of the used ring (packed: the device area). */
  logAddr: bigint | undefined;
  /** Packed ring with VHOST_VRING_F_LOG: the descriptor ring's guest-physical address (found through the memory table; `undefined` while it is not mapped). */
  descLogAddr: bigint | undefined;
  /** SET_VRING_BASE's `num` (split: next avail index), read back by GET_VRING_BASE; `undefined`: the fresh base. */
  base: number | undefined;
  kick: EventFd | undefined;
  /** Undefined = polling mode, never signalled. */
  call: EventFd | undefined;
  err: EventFd | undefined;
  /** SET_VRING_ENABLE (rings start disabled when PROTOCOL_FEATURES is negotiated). */
  enabled = false;
  /** The device side of the ring between SET_VRING_KICK and GET_VRING_BASE. */
  queue: DeviceQueue | undefined;
  /** The handler runs for this ring now. */
  busy = false;
  /** A kick arrived while the handler was busy: it runs again afterwards. */
  kickedWhileBusy = false;
  /** The ring's memory left the table while it was started (see {@link RingRunner.remap}). */
  waitingForMemory = false;
  /** The device reported a guest error in this ring's buffers (`QueueContext.fail`): broken until the ring restarts. */
  failedBy: unknown;
  /** The current polling window (µs), adapted at each kick that follows a poll that found nothing (`ring-poll.ts`). */
  pollMicros: number;
  /** When the last poll gave up (performance.now() ms), or -1. */
  pollMissedAt = -1;

  constructor(index: number, pollMicros: number) {
    this.index = index;
    this.pollMicros = pollMicros;
  }

  get started(): boolean {
    return this.queue !== undefined;
  }

  /** A part of this ring starts in the front-end address range [`start`, `start + len`) (a part never spans two regions). */
  inUserRange(start: bigint, len: bigint): boolean {
    const a = this.addresses;
    const inside = (x: bigint): boolean => x >= start && x - start < len;
    return a !== undefined && (inside(a.desc) || inside(a.avail) || inside(a.used));
  }

  /** Packed ring with the log flag: where its descriptor ring lies in guest-physical memory (again after each memory-table change). */
  findDescLogAddr(memory: MemoryTable, packed: boolean): void {
    this.descLogAddr = packed && this.logAddr !== undefined && this.addresses !== undefined ? guestAddressOfUser(memory, this.addresses.desc) : undefined;
  }

  /**
   * Marks what the device writes of this ring when logging (over-marking is harmless; a few pages): split, the whole
   * used ring; packed, the device area (event suppression) and the whole descriptor ring, where used descriptors go.
   */
  logUsed(log: DirtyLogger | undefined, packed: boolean): void {
    if (log === undefined || this.logAddr === undefined) return;
    if (!packed) log.mark(this.logAddr, 6 + 8 * this.size);
    else {
      log.mark(this.logAddr, 4);
      if (this.descLogAddr !== undefined) log.mark(this.descLogAddr, 16 * this.size);
    }
  }

  /** Close the eventfds (GET_VRING_BASE drops them, as libvhost-user and rust-vmm do). */
  dropFds(): void {
    for (const f of [this.kick, this.call, this.err]) f?.close();
    this.kick = this.call = this.err = undefined;
  }
}
