/**
 * The ring runtime of one connection (docs/protocol.md#starting-and-stopping-rings): the vrings as the front-end configures
 * them, and the device's queue handler run on their kicks. Everything about a vring changes here,
 * through methods that keep these invariants:
 *
 * - size, addresses and base change only while the ring is stopped (between GET_VRING_BASE and
 *   SET_VRING_KICK); a ring starts only with a size and addresses; they are checked against the
 *   layout the acknowledged features pick (split, or packed: `ring-layout.ts`) when set and again
 *   when the ring starts;
 * - one handler run per ring at a time: a kick during a run makes the run go round once more;
 * - the memory a handler sees stays mapped until it returns (a pin on the memory table), and a
 *   ring stops only once no handler runs ({@link RingRunner.quiesce});
 * - a ring whose memory left the table is suspended, not broken, until a later change maps it again
 *   (a handler running at that moment ends its run at its next call on the stopped queue);
 * - a replaced or dropped eventfd is closed, which ends its kick loop.
 *
 * No sockets: the runner takes eventfds, a memory table and a device, so it can be driven directly.
 * @module
 */
import { isRegionError, type MemoryTable } from "@vhostkit/regions";
import type { EventFd } from "@vhostkit/transport";
import {
  isVirtqueueError,
  PackedInflight,
  SplitQueue,
  type DeviceQueue,
  type DirtyLogger,
  type RingAddresses,
  type SplitInflight,
  type VirtqueueError,
} from "@vhostkit/virtqueue";
import { isVhostUserError, MAX_VRING_SIZE, VirtioFeature, VRING_F_LOG } from "@vhostkit/wire";
import type { QueueContext } from "./device-backend.js";
import { protocolError } from "./errors.js";
import type { RingRunnerOptions } from "./ring-runner-options.js";
import { Vring } from "./vring.js";
import { adaptPollMicros, defaultRingPollMicros, pollRing } from "./ring-poll.js";
import { checkRingAlignment, checkRingSize, freshRingBase, isPackedLayout, packedQueue, ringBase } from "./ring-layout.js";

export type { RingRunnerOptions } from "./ring-runner-options.js";

/**
 * Owns the vrings of one connection and runs the device's queue handler on them (see the module
 * notes for the invariants). Methods that take a `request` name it in their errors, which are
 * `BackendError` `PROTOCOL` for a request the rings' state does not allow.
 */
export class RingRunner {
  readonly #vrings: Vring[];
  readonly #device: RingRunnerOptions["device"];
  readonly #memory: MemoryTable;
  readonly #options: RingRunnerOptions;
  /** Handler runs in progress, over all rings. */
  #runningHandlers = 0;
  /** Resolved when `#runningHandlers` drops to 0. */
  #whenIdle: (() => void)[] = [];
  /** A stop began (GET_VRING_BASE, SET_STATUS 0, reset) and no ring started since. */
  #stopping = false;
  #running = false;
  #closed = false;
  /** VIRTIO_F_RING_PACKED was acknowledged: rings set up now are packed. */
  #packed = false;
  /** A graceful shutdown began: no new handler run starts. */
  #draining = false;
  /** Dirty page logging (docs/protocol.md#dirty-page-logging): on while LOG_ALL is acknowledged and a log is mapped. */
  #log: DirtyLogger | undefined;

  /** The longest polling window after a handler run (µs). */
  readonly #pollMicros: number;

  /** @param options - the device, the memory table and the reports. */
  constructor(options: RingRunnerOptions) {
    this.#options = options;
    this.#pollMicros = options.pollMicros ?? defaultRingPollMicros();
    this.#device = options.device;
    this.#memory = options.memory;
    this.#vrings = Array.from({ length: options.device.queueCount }, (_, i) => new Vring(i, this.#pollMicros));
  }

  /** Number of rings (the device's queue count). */
  get count(): number {
    return this.#vrings.length;
  }

  /**
   * True while the device runs: a ring started (SET_VRING_KICK) and none stopped since
   * (GET_VRING_BASE, SET_STATUS 0, reset, close). Front-ends start the rings only once the driver
   * set DRIVER_OK; SET_STATUS(DRIVER_OK) itself is not waited for, because QEMU 11.1.3's
   * vhost-user-test-device negotiates STATUS but never sends it (it sends FEATURES_OK only), and a
   * device there could otherwise never map.
   */
  get running(): boolean {
    return this.#running;
  }

  /** True between SET_VRING_KICK and GET_VRING_BASE of ring `index`. */
  isStarted(index: number): boolean {
    return this.#vrings[index]?.started ?? false;
  }

  /** @throws BackendError `PROTOCOL` when there is no ring `index`. */
  checkIndex(request: string, index: number): void {
    this.#vring(request, index);
  }

  #vring(request: string, index: number): Vring {
    const v = this.#vrings[index];
    if (v === undefined)
      throw protocolError(request, `vring ${index} out of range (${this.#vrings.length} queues)`, { actual: index, expected: this.#vrings.length });
    return v;
  }

  #stoppedVring(request: string, index: number): Vring {
    const v = this.#vring(request, index);
    if (v.started) throw protocolError(request, `vring ${v.index} is started`);
    return v;
  }

  /** SET_FEATURES (`undefined`: reset): the layout of the rings set up from now on. */
  featuresAcked(features: bigint | undefined): void {
    this.#packed = isPackedLayout(features);
  }

  /** SET_VRING_NUM on a stopped ring: at most the device's maximum; a power of two unless packed. */
  setSize(request: string, index: number, size: number): void {
    const v = this.#stoppedVring(request, index);
    checkRingSize(request, size, Math.min(this.#device.maxQueueSize, MAX_VRING_SIZE), this.#packed);
    v.size = size;
  }

  /**
   * SET_VRING_ADDR: desc 16-, avail 2- (packed: 4-), used 4-byte aligned, on a stopped ring or a started one with
   * the same addresses (QEMU turns used-ring logging on so). VHOST_VRING_F_LOG in `flags`: used-ring writes are
   * logged at `logAddr`; on a packed ring the device area there, and the descriptor ring (used descriptors) at its
   * guest-physical address (docs/protocol.md#dirty-page-logging).
   */
  setAddresses(request: string, index: number, addresses: RingAddresses, flags: number, logAddr = 0n): void {
    const v = this.#vring(request, index),
      a = v.addresses;
    if (v.started && (a === undefined || a.desc !== addresses.desc || a.avail !== addresses.avail || a.used !== addresses.used))
      throw protocolError(request, `vring ${v.index} is started`);
    checkRingAlignment(request, addresses, this.#packed);
    v.addresses = addresses;
    v.logAddr = (flags & VRING_F_LOG) !== 0 ? logAddr : undefined;
    v.findDescLogAddr(this.#memory, this.#packed);
  }

  /** Logs every write to guest memory from now on into `log` (`undefined`: logging off). */
  setDirtyLog(log: DirtyLogger | undefined): void {
    for (const v of this.#vrings) if (v.queue) v.queue.dirtyLog = log;
    this.#log = log;
  }

  /**
   * SET_VRING_BASE on a stopped ring: `num` is the request's, for a split ring the next avail index
   * to read in bits 0–15, for a packed one both positions with their wrap counters.
   * @throws WireError `BAD_VALUE` when bits 16–31 are set (split); BackendError `PROTOCOL` (packed, not fitting the size).
   */
  setBase(request: string, index: number, num: number): void {
    const v = this.#stoppedVring(request, index);
    v.base = ringBase(request, num, v.size, this.#packed);
  }

  /**
   * SET_VRING_KICK: installs `kick` (ownership taken; the previous kick fd is closed) and starts a
   * stopped ring with the virtio features the driver acknowledged (`undefined`: SET_FEATURES not
   * seen yet). A started ring only gets the new kick fd (a front-end switching notifiers, as in
   * libvhost-user): its queue, call and err fds carry on.
   * @throws BackendError `PROTOCOL` when the ring has no size or addresses yet (the kick fd stays installed).
   */
  setKick(request: string, index: number, kick: EventFd, ackedFeatures: bigint | undefined): void {
    const v = this.#vring(request, index);
    v.kick?.close(); // ends the old fd's kick loop
    v.kick = kick;
    if (!v.started) {
      this.#start(request, v, ackedFeatures);
      return;
    }
    void this.#kickLoop(v, kick);
    this.#schedule(v);
  }

  /**
   * SET_VRING_CALL: installs `call` (ownership taken; `undefined` = polling mode), closing the
   * previous one. A started ring may have published used entries while it had no call fd (or
   * signalled the old one the driver no longer watches): the new fd is signalled once so that no
   * completion goes unnoticed, as libvhost-user does. A spurious interrupt is harmless.
   * @throws TransportError when `call` cannot be signalled; it is then closed, not installed.
   */
  setCall(request: string, index: number, call: EventFd | undefined): void {
    const v = this.#vring(request, index);
    v.call?.close();
    v.call = call;
    try {
      if (v.started) v.call?.signal();
    } catch (err) {
      v.call?.close();
      v.call = undefined;
      throw err;
    }
  }

  /** SET_VRING_ERR: installs `err` (ownership taken; `undefined` = none), closing the previous one. */
  setErr(request: string, index: number, err: EventFd | undefined): void {
    const v = this.#vring(request, index);
    v.err?.close();
    v.err = err;
  }

  /** SET_VRING_ENABLE: an enabled started ring runs its handler for what the driver queued meanwhile. */
  setEnabled(request: string, index: number, enabled: boolean): void {
    const v = this.#vring(request, index);
    v.enabled = enabled;
    if (enabled) this.#schedule(v);
  }

  /** Enables every ring (SET_FEATURES without VHOST_USER_F_PROTOCOL_FEATURES: rings are enabled from the start). */
  enableAll(): void {
    for (const v of this.#vrings) v.enabled = true;
  }

  /**
   * A stop begins (GET_VRING_BASE, SET_STATUS 0, reset): not running from now on. Handlers still
   * running finish; {@link RingRunner.stop} and {@link RingRunner.stopAll} wait for them.
   */
  beginStop(): void {
    this.#stopping = true;
    this.#updateRunning();
  }

  /**
   * GET_VRING_BASE: once no handler runs, stops ring `index` and drops its eventfds.
   * @returns the reply's `num`: the next avail index (split), or both positions and wrap counters (packed).
   */
  async stop(request: string, index: number): Promise<number> {
    const v = this.#vring(request, index);
    await this.quiesce();
    return this.#stopRing(v);
  }

  /** Once no handler runs, stops and disables every ring (RESET_OWNER, RESET_DEVICE, SET_STATUS 0). */
  async stopAll(): Promise<void> {
    await this.quiesce();
    this.#stopAndDisableAll();
  }

  /**
   * RESET_DEVICE's "reset all internal device state to the initial state": stopped rings forget
   * size, addresses, base (a ring restarted without SET_VRING_BASE starts at its layout's fresh
   * base, not where it was) and the acknowledged layout.
   */
  forgetConfiguration(): void {
    this.#packed = false;
    for (const v of this.#vrings) {
      v.size = 0;
      v.addresses = v.logAddr = undefined;
      v.base = undefined;
    }
  }

  /**
   * After a memory-table change: re-map every started ring. One whose rings are no longer in the
   * table is suspended until a later change maps them again, then resumes where it stopped.
   * `change` names what happened when it is one region: `"added"` (ADD_MEM_REG, none changed or
   * gone) or `removed` (REM_MEM_REG of that front-end address range). A mapped ring outside it keeps
   * its views, so only the rings waiting for their memory or lying in the removed range are
   * re-mapped (a propagated mapping costs no re-map of every queue).
   * @throws what remapping throws other than a virtqueue or region error (those break the ring).
   */
  remap(change?: "added" | { readonly removed: bigint; readonly len: bigint }): void {
    for (const v of this.#vrings) {
      v.findDescLogAddr(this.#memory, this.#packed);
      const q = v.queue;
      if (!q || q.brokenBy !== undefined) continue;
      if (change !== undefined && !v.waitingForMemory && (change === "added" || !v.inUserRange(change.removed, change.len))) continue;
      try {
        q.remap(this.#memory);
        if (!v.waitingForMemory) continue;
        q.start(); // at the avail index it stopped at; used.idx is read back from the ring
        v.waitingForMemory = false;
        this.#schedule(v); // what the driver queued meanwhile
      } catch (err) {
        // QEMU removes and re-adds a region it changes: a ring whose memory is gone waits for it.
        if (isVirtqueueError(err) && err.code === "RING_UNMAPPED") v.waitingForMemory = true;
        else if (isVirtqueueError(err) || isRegionError(err)) this.#queueBroken(v, err);
        else throw err;
      }
    }
  }

  /**
   * Graceful shutdown: no handler run starts from now on (kicks are left in the rings for the next
   * back-end), and a running one returns after the `processQueue` call in progress.
   * @returns resolves once no handler runs ({@link RingRunner.quiesce}).
   */
  drain(): Promise<void> {
    this.#draining = true;
    return this.quiesce();
  }

  /** Resolves once no queue handler runs (before unmapping memory a handler might be using). */
  async quiesce(): Promise<void> {
    while (this.#runningHandlers > 0) await new Promise<void>((r) => this.#whenIdle.push(r));
  }

  /**
   * The connection ended: stops and disables every ring at once (handlers still running keep
   * their pinned memory until they return; await {@link RingRunner.quiesce}) and runs nothing more.
   */
  close(): void {
    this.#closed = true;
    this.#stopAndDisableAll();
    this.#updateRunning();
  }

  #stopAndDisableAll(): void {
    for (const v of this.#vrings) {
      this.#stopRing(v);
      v.enabled = false;
    }
  }

  #start(request: string, v: Vring, ackedFeatures: bigint | undefined): void {
    if (v.size === 0 || v.addresses === undefined) throw protocolError(request, `vring ${v.index} has no size or addresses yet`);
    const features = ackedFeatures ?? 0n;
    const packed = isPackedLayout(features);
    checkRingSize(request, v.size, v.size, packed); // SET_FEATURES may have changed the layout since
    const base = v.base === undefined ? freshRingBase(packed) : ringBase(request, v.base, v.size, packed);
    const inflight = this.#options.inflight?.(v.index);
    if (inflight !== undefined && inflight instanceof PackedInflight !== packed)
      throw protocolError(
        request,
        `vring ${v.index}: the inflight area is in the ${packed ? "split" : "packed"}-ring layout, the ring is ${packed ? "packed" : "split"}`,
      );
    const queue: DeviceQueue = packed
      ? this.#packedQueue(request, v, v.addresses, features, inflight as PackedInflight | undefined)
      : new SplitQueue({
          ...(inflight === undefined ? {} : { inflight: inflight as SplitInflight }),
          size: v.size,
          memory: this.#memory,
          addresses: v.addresses,
          addressSpace: "user",
          eventIdx: (features & VirtioFeature.EVENT_IDX) !== 0n,
          indirect: (features & VirtioFeature.INDIRECT_DESC) !== 0n,
          maxIndirectLength: v.size,
          onBroken: (error) => this.#queueBroken(v, error),
        });
    queue.start(base);
    queue.dirtyLog = this.#log;
    v.queue = queue;
    v.failedBy = undefined;
    if (inflight !== undefined) this.#options.onInflight?.(v.index, inflight.lastRecovery?.resubmit.length ?? 0);
    if ((features & VirtioFeature.PROTOCOL_FEATURES) === 0n && ackedFeatures !== undefined) v.enabled = true;
    this.#stopping = false;
    const kick = v.kick;
    if (kick) void this.#kickLoop(v, kick);
    this.#updateRunning();
    this.#schedule(v);
  }

  /** The device side of packed ring `v`, recorded in `inflight` when given. */
  #packedQueue(request: string, v: Vring, addresses: RingAddresses, features: bigint, inflight: PackedInflight | undefined): DeviceQueue {
    const flag = (f: bigint): boolean => (features & f) !== 0n;
    const onBroken = (error: VirtqueueError): void => this.#queueBroken(v, error);
    return packedQueue(request, v.index, {
      size: v.size,
      memory: this.#memory,
      addresses,
      addressSpace: "user",
      eventIdx: flag(VirtioFeature.EVENT_IDX),
      indirect: flag(VirtioFeature.INDIRECT_DESC),
      maxIndirectLength: v.size,
      onBroken,
      ...(inflight === undefined ? {} : { inflight }),
    });
  }

  /** Stops `v`: keeps where it stopped as its base (GET_VRING_BASE's `num`) and drops the eventfds. */
  #stopRing(v: Vring): number {
    const q = v.queue;
    v.queue = undefined;
    v.waitingForMemory = false;
    if (q) v.base = q.stop(); // its used ring is logged below, with the notification fields written since the last notify
    if (q) v.logUsed(this.#log, this.#packed);
    v.dropFds();
    return v.base ?? freshRingBase(this.#packed);
  }

  async #kickLoop(v: Vring, kick: EventFd): Promise<void> {
    for (;;) {
      try {
        await kick.wait();
      } catch (err) {
        // Closed: replaced, stopped or disconnected. Anything else is a kick fd that is no eventfd
        // (a short read, EOF): the ring would stall silently, so it is reported as broken.
        if (v.kick === kick && !(isVhostUserError(err) && err.code === "CLOSED")) this.#queueBroken(v, err);
        return;
      }
      if (v.kick !== kick) return;
      if (v.pollMissedAt >= 0) {
        const waited = v.pollMicros + (performance.now() - v.pollMissedAt) * 1000;
        v.pollMicros = adaptPollMicros(v.pollMicros, waited, this.#pollMicros);
        v.pollMissedAt = -1;
      }
      this.#schedule(v);
    }
  }

  #schedule(v: Vring): void {
    if (!v.started || !v.enabled || v.waitingForMemory || v.failedBy !== undefined || this.#closed || this.#draining) return;
    if (v.busy) {
      v.kickedWhileBusy = true;
      return;
    }
    void this.#runHandler(v);
  }

  async #runHandler(v: Vring): Promise<void> {
    v.busy = true;
    this.#runningHandlers++;
    // Views the handler holds stay mapped until it returns, whatever the front-end removes meanwhile.
    const unpin = this.#memory.pin();
    /** The queue of the current round. */
    let queue: DeviceQueue | undefined;
    try {
      do {
        v.kickedWhileBusy = false;
        const q = v.queue;
        queue = q;
        if (q === undefined || q.brokenBy !== undefined || v.failedBy !== undefined || v.waitingForMemory) break;
        const ctx: QueueContext = {
          index: v.index,
          queue: q,
          memory: this.#options.handlerMemory?.() ?? this.#memory,
          notify: () => {
            if (v.queue !== q || q.brokenBy !== undefined) return;
            const signal = q.publishUsed();
            v.logUsed(this.#log, this.#packed); // the used elements, used.idx and the notification fields: logged before the driver hears of them
            if (signal) v.call?.signal();
          },
          fail: (error) => {
            if (v.queue !== q || q.brokenBy !== undefined || v.failedBy !== undefined) return;
            v.failedBy = error ?? new Error("queue failed");
            this.#queueBroken(v, v.failedBy);
          },
        };
        for (;;) {
          q.disableNotification();
          const more = await this.#device.processQueue(ctx);
          ctx.notify();
          if (more === false) break; // the device paces this queue itself (a receive queue)
          if (!this.#keepOn(v, q)) break;
          // Notifications stay off while the ring is polled: a driver that submits again soon costs no kick.
          if (v.pollMicros > 0) {
            if (await pollRing(q, v.pollMicros, () => this.#keepOn(v, q))) continue;
            v.pollMissedAt = performance.now(); // the next kick tells whether a longer window would have caught it
          }
          if (!this.#keepOn(v, q) || !q.enableNotification()) break;
        }
      } while (v.kickedWhileBusy && v.started && v.enabled && !this.#draining);
    } catch (err) {
      // The runner stopped the queue under the handler — its memory left the table (the ring waits
      // for it: suspended, it runs again once remap maps it back) or the connection closed — so the
      // handler's next call on it threw NOT_STARTED: the run ends there, and nothing is broken.
      const stoppedUnderHandler = isVirtqueueError(err) && err.code === "NOT_STARTED" && (v.waitingForMemory || v.queue !== queue);
      // Guest errors already broke the queue and were reported through onBroken.
      if (!stoppedUnderHandler && (!isVirtqueueError(err) || v.queue?.brokenBy === undefined)) this.#queueBroken(v, err);
    } finally {
      unpin();
      v.busy = false;
      if (--this.#runningHandlers === 0) {
        const idle = this.#whenIdle;
        this.#whenIdle = [];
        for (const r of idle) r();
      }
    }
  }

  /** Whether the run of `v` on `q` may go on (poll, enable notifications, pop again). */
  #keepOn(v: Vring, q: DeviceQueue): boolean {
    return v.queue === q && q.brokenBy === undefined && v.failedBy === undefined && !v.waitingForMemory && !this.#draining && !this.#closed;
  }

  #queueBroken(v: Vring, err: unknown): void {
    try {
      v.err?.signal();
    } catch {
      // the err fd is gone (front-end closed it): the report below still tells of the failure
    }
    this.#options.onQueueBroken?.(v.index, err);
  }

  #updateRunning(): void {
    const now = !this.#closed && !this.#stopping && this.#vrings.some((v) => v.started);
    if (now === this.#running) return;
    this.#running = now;
    this.#options.onRunningChange?.(now);
  }
}
