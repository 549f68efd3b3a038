/**
 * Per-virtqueue state on the back-end side (PROTOCOL.md §4.5): size, addresses, base, the kick / call
 * / err eventfds, enabled and started flags, and the device-side {@link SplitQueue} once started.
 * @module
 */
import type { EventFd } from "@vhostkit/transport";
import type { RingAddresses, SplitQueue } from "@vhostkit/virtqueue";

/** One vring's state as the front-end configured it. */
export class Vring {
  /** Queue index. */
  readonly index: number;
  /** SET_VRING_NUM (0 = not set). */
  size = 0;
  /** SET_VRING_ADDR (front-end virtual addresses, or GPAs with GPA_ADDRESSES). */
  addresses: RingAddresses | undefined;
  /** SET_VRING_BASE: next avail index to read. */
  base = 0;
  /** Kick eventfd (SET_VRING_KICK). */
  kick: EventFd | undefined;
  /** Call eventfd (SET_VRING_CALL); undefined = polling mode, never signalled. */
  call: EventFd | undefined;
  /** Err eventfd (SET_VRING_ERR). */
  err: EventFd | undefined;
  /** SET_VRING_ENABLE state (rings start disabled when PROTOCOL_FEATURES is negotiated). */
  enabled = false;
  /** Device side of the ring between SET_VRING_KICK and GET_VRING_BASE. */
  queue: SplitQueue | undefined;
  /** True while the device's handler runs for this queue. */
  busy = false;
  /** A kick arrived while the handler was busy: run it again afterwards. */
  again = false;
  /**
   * The memory holding the rings was removed while the ring was started (REM_MEM_REG, a new
   * SET_MEM_TABLE): the ring is suspended, kicks wait, and it resumes once a memory-table change
   * maps its rings again (QEMU removes and re-adds a region when it changes).
   */
  waitingForMemory = false;

  /** @param index - queue index. */
  constructor(index: number) {
    this.index = index;
  }

  /** True between SET_VRING_KICK and GET_VRING_BASE. */
  get started(): boolean {
    return this.queue !== undefined;
  }

  /** Close the eventfds (GET_VRING_BASE drops them, as libvhost-user and rust-vmm do). */
  dropFds(): void {
    for (const f of [this.kick, this.call, this.err]) f?.close();
    this.kick = undefined;
    this.call = undefined;
    this.err = undefined;
  }
}
