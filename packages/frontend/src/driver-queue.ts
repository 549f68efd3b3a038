/**
 * One driven virtqueue: the ring in guest RAM (split, or packed when VIRTIO_F_RING_PACKED was
 * negotiated; docs/virtqueue.md#packed-rings), its kick and call eventfds, and request submission
 * with completion tracking.
 * @module
 */
import { PackedDriver, SplitDriver, UsedBatch, type DriverBuffer } from "@vhostkit/virtqueue/driver";
import { FRESH_PACKED_VRING_BASE } from "@vhostkit/virtqueue";
import { EventFd } from "@vhostkit/transport";
import type { GuestAddress } from "@vhostkit/regions";
import { FrontendError } from "./errors.js";
import { Deadlines } from "./driver-deadlines.js";
import { pinGuestBuffer, transferChain, type TransferResult } from "./driver-transfer.js";
import type { DriverQueueOptions, Pending, StandingChain } from "./driver-queue-types.js";

/** The driver side of either ring layout: both have the same operations. */
type RingDriver = SplitDriver<Pending> | PackedDriver<Pending>;

/**
 * The driver side of one virtqueue set up on a back-end. Rings live in guest RAM at guest-physical
 * addresses; the back-end receives their synthetic user addresses with SET_VRING_ADDR. Completions
 * are collected when the back-end signals the call eventfd; each request has a timeout. When the
 * ring has too few free descriptors, requests wait (in submission order) until completions free
 * enough: callers may submit any number at once.
 *
 * Owns its eventfds and ring memory; the device releases them when it stops, fails or closes.
 */
export class DriverQueue {
  /** Queue index on the device. */
  readonly index: number;
  /** Queue size (descriptors). */
  readonly size: number;
  /** True for a packed ring (VIRTIO_F_RING_PACKED negotiated), false for a split ring. */
  readonly packed: boolean;
  /**
   * Guest-physical ring addresses, as SET_VRING_ADDR carries them: split — descriptor table,
   * available ring, used ring; packed — descriptor ring, driver area, device area (the event
   * suppression structures).
   */
  readonly rings: { readonly desc: GuestAddress; readonly avail: GuestAddress; readonly used: GuestAddress };
  readonly #driver: RingDriver;
  readonly #kick: EventFd;
  readonly #call: EventFd;
  readonly #options: DriverQueueOptions;
  readonly #ringBase: GuestAddress;
  /** Every request not yet completed (in the ring or waiting) but standing ones, and their timer. */
  readonly #deadlines = new Deadlines<Pending>(
    (p) => {
      const e = new FrontendError("TIMEOUT", `queue ${this.index}: request not completed within ${p.timeoutMs} ms`, { request: "VIRTQUEUE" });
      this.#options.onFatal(e);
      this.fail(e);
    },
    () => this.#paused,
  );
  /** Requests waiting for free descriptors, oldest first. */
  readonly #waiting: Pending[] = [];
  #pumping = false;
  #inFlight = 0;
  #error: FrontendError | undefined;
  /** The back-end was lost and the ring waits for a new one: submissions wait, nothing times out. */
  #paused = false;
  /** Nesting depth of {@link DriverQueue.batch}: chains added meanwhile are published at its end. */
  #batching = 0;
  /** Where each collection round's used buffers go (reused: no allocation per completion; empty between rounds). */
  readonly #used: UsedBatch<Pending>;
  #unpublished = false;
  /** Every standing chain of this queue ({@link DriverQueue.standing}). */
  readonly #standing: Pending[] = [];
  /** Keep polling the used ring this long (ms) after the last completion; 0: wait for calls only. */
  #pollMs = 0;
  /** {@link DriverQueue.setRoundEnd}'s callback. */
  #roundEnd: (() => void) | undefined;
  /** Buffers handed out by {@link DriverQueue.pinBuffer}, freed with the rings. */
  readonly #pinned: GuestAddress[] = [];

  private constructor(options: DriverQueueOptions, base: GuestAddress, driver: RingDriver, kick: EventFd, call: EventFd, rings: DriverQueue["rings"]) {
    this.#options = options;
    this.index = options.index;
    this.size = options.size;
    this.packed = options.packed ?? false;
    this.#ringBase = base;
    this.#driver = driver;
    this.#used = new UsedBatch<Pending>(driver.size);
    this.#kick = kick;
    this.#call = call;
    this.rings = rings;
  }

  /**
   * Allocates the rings (zeroed; a packed ring laid out as never used) and the two eventfds. Split:
   * descriptor table, available ring (4 + 2q bytes + used_event) and used ring (4 + 8q bytes +
   * avail_event, 4-aligned). Packed: the descriptor ring (16q bytes), then the driver and the device
   * event suppression structures (4 bytes each).
   * @throws FrontendError `BAD_ARGUMENT` (queue size), `OUT_OF_MEMORY`.
   * @internal
   */
  static create(options: DriverQueueOptions): DriverQueue {
    const q = options.size;
    const descBytes = 16 * q;
    const availOff = descBytes;
    const usedOff = options.packed === true ? availOff + 4 : (availOff + 6 + 2 * q + 3) & ~3;
    const total = options.packed === true ? usedOff + 4 : usedOff + 6 + 8 * q;
    const base = options.allocator.alloc(total, 4096);
    let kick: EventFd | undefined;
    let call: EventFd | undefined;
    try {
      const rings = { desc: base, avail: (base + BigInt(availOff)) as GuestAddress, used: (base + BigInt(usedOff)) as GuestAddress };
      const ringOptions = { size: q, memory: options.memory, addresses: rings, eventIdx: options.eventIdx ?? false };
      const driver = options.packed === true ? new PackedDriver<Pending>(ringOptions) : new SplitDriver<Pending>(ringOptions);
      kick = EventFd.create();
      call = EventFd.create();
      return new DriverQueue(options, base, driver, kick, call, rings);
    } catch (err) {
      kick?.close();
      call?.close();
      options.allocator.free(base);
      throw err instanceof FrontendError
        ? err
        : new FrontendError("BAD_ARGUMENT", `queue ${options.index}: ${err instanceof Error ? err.message : String(err)}`, { actual: q }, { cause: err });
    }
  }

  /** The kick eventfd (borrowed; sent with SET_VRING_KICK). */
  get kickFd(): number {
    return this.#kick.fd;
  }

  /** The call eventfd (borrowed; sent with SET_VRING_CALL). */
  get callFd(): number {
    return this.#call.fd;
  }

  /** Why the queue stopped (the device failed or closed), or undefined while it runs. */
  get error(): FrontendError | undefined {
    return this.#error;
  }

  /** Requests submitted and not yet completed (in the ring, or waiting for free descriptors). */
  get inFlight(): number {
    return this.#inFlight + this.#waiting.length;
  }

  /**
   * Where the next chain goes (u16). Split: the free-running avail index. Packed: the ring offset in
   * bits 0–14 and the driver's wrap counter in bit 15.
   */
  get availIndex(): number {
    return this.#driver.availIndex;
  }

  /**
   * The SET_VRING_BASE `num` a back-end starts this ring at: 0 for a split ring,
   * `FRESH_PACKED_VRING_BASE` (offsets 0, wrap counters 1) for a packed one.
   */
  get initialVringBase(): number {
    return this.packed ? FRESH_PACKED_VRING_BASE : 0;
  }

  /**
   * What GET_VRING_BASE should return once every request completed and was collected. Split: the
   * next avail index (u16). Packed: the avail position (offset | wrap << 15) in bits 0–15 and the
   * used position in bits 16–31 (u32).
   */
  get vringBase(): number {
    return this.packed ? (this.#driver.availIndex | (this.#driver.lastUsedIndex << 16)) >>> 0 : this.#driver.availIndex;
  }

  /** Writes 1 to the kick eventfd (the first kick after set-up, docs/protocol.md#starting-and-stopping-rings). */
  kick(): void {
    this.#kick.signal();
  }

  /**
   * Makes one chain available (device-readable buffers, then device-writable ones), kicks when the
   * ring says so, and resolves with `used.len` when the device returns it. When the ring lacks free
   * descriptors the chain waits for completions first (its timeout runs from this call).
   * @throws FrontendError `TIMEOUT` (the device is then failed), `DEVICE_FAILED`, `BAD_ARGUMENT`
   *   (a bad buffer, or more buffers than the queue has descriptors).
   */
  submit(readable: readonly DriverBuffer[], writable: readonly DriverBuffer[], timeoutMs = this.#options.timeoutMs): Promise<number> {
    return new Promise<number>((resolve, reject) => this.post(readable, writable, resolve, reject, timeoutMs));
  }

  /**
   * {@link DriverQueue.submit} without a promise, for drivers with many chains in flight: `done(used.len)`
   * or `fail(error)` is called once, from the completion round (at once for a chain refused up front).
   */
  post(
    readable: readonly DriverBuffer[],
    writable: readonly DriverBuffer[],
    done: (len: number) => void,
    fail: (err: FrontendError) => void,
    timeoutMs = this.#options.timeoutMs,
  ): void {
    if (this.#error !== undefined) {
      fail(this.#error);
      return;
    }
    const n = readable.length + writable.length;
    if (n > this.size) {
      fail(
        new FrontendError("BAD_ARGUMENT", `queue ${this.index}: a chain of ${n} buffers never fits a queue of ${this.size} descriptors`, {
          expected: this.size,
          actual: n,
        }),
      );
      return;
    }
    const p: Pending = { resolve: done, reject: fail, deadline: performance.now() + timeoutMs, timeoutMs, readable, writable };
    if (this.#paused || this.#waiting.length > 0 || this.#driver.numFree < n) {
      this.#waiting.push(p);
      this.#deadlines.track(p);
      return;
    }
    if (!this.#add(p)) return;
    this.#deadlines.track(p);
    this.#added();
  }

  /** A chain went on the ring: publish it now (at most one kick), or at the end of the batch. */
  #added(): void {
    if (this.#batching > 0) {
      this.#unpublished = true;
      return;
    }
    if (this.#driver.publish()) this.#kick.signal();
    void this.#pump();
  }

  /**
   * Makes a {@link StandingChain}: `done(used.len)` is called after each completion, `fail(error)`
   * once if the queue fails while the chain is queued. Nothing is queued until
   * {@link DriverQueue.repost}. The chain is never timed out.
   * @throws FrontendError `BAD_ARGUMENT` (no buffers, or more than the queue has descriptors).
   */
  standing(
    readable: readonly DriverBuffer[],
    writable: readonly DriverBuffer[],
    done: (len: number) => void,
    fail: (err: FrontendError) => void,
  ): StandingChain {
    const n = readable.length + writable.length;
    if (n > this.size || n === 0)
      throw new FrontendError("BAD_ARGUMENT", `queue ${this.index}: a chain of ${n} buffers for a queue of ${this.size} descriptors`, {
        expected: this.size,
        actual: n,
      });
    const p: Pending = { resolve: done, reject: fail, deadline: Infinity, timeoutMs: Infinity, readable, writable, owner: this, queued: false };
    this.#standing.push(p);
    return p;
  }

  /**
   * Makes standing chain `c` available again, as {@link DriverQueue.post} does without allocating or
   * timing it (inside a batch or a completion callback: published with the others at the end).
   * @throws FrontendError `BAD_ARGUMENT` (not a standing chain of this queue, or already queued).
   */
  repost(c: StandingChain): void {
    const p = c as Pending;
    if (p.owner !== this || p.queued === true) throw new FrontendError("BAD_ARGUMENT", `queue ${this.index}: not an idle standing chain of this queue`);
    if (this.#error !== undefined) {
      p.reject(this.#error);
      return;
    }
    p.queued = true;
    if (this.#paused || this.#waiting.length > 0 || this.#driver.numFree < p.readable.length + p.writable.length) {
      this.#waiting.push(p);
      return;
    }
    if (!this.#add(p)) {
      p.queued = false;
      return;
    }
    this.#added();
  }

  /**
   * Polls for completions (one round per `setImmediate`) until `micros` µs pass without one, the
   * device's calls suppressed meanwhile; then asks for calls and re-checks the ring before waiting
   * (docs/virtio-net.md#the-receive-path). 0 (the default): one round per call.
   * @throws FrontendError `BAD_ARGUMENT` (negative or not finite).
   */
  setPolling(micros: number): void {
    if (!Number.isFinite(micros) || micros < 0) throw new FrontendError("BAD_ARGUMENT", `queue ${this.index}: polling for ${micros} µs`, { actual: micros });
    this.#pollMs = micros / 1000;
  }

  /** Sets a callback run after each round of completions (after theirs; what it submits is published with theirs). */
  setRoundEnd(fn: (() => void) | undefined): void {
    this.#roundEnd = fn;
  }

  /** Runs `fn`, which submits chains, then publishes them together: one avail index update, at most one kick. */
  batch<T>(fn: () => T): T {
    this.#batching++;
    try {
      return fn();
    } finally {
      this.#endBatch();
    }
  }

  /** Leaves a batch; the outermost publishes what was added meanwhile (one avail update, at most one kick). */
  #endBatch(): void {
    if (--this.#batching > 0 || !this.#unpublished) return;
    this.#unpublished = false;
    if (this.#error !== undefined) return;
    if (this.#driver.publish()) this.#kick.signal();
    void this.#pump();
  }

  /**
   * Allocates `len` bytes of guest RAM that the caller keeps for the queue's whole life (a driver's
   * standing receive or transmit buffers) and returns its address with a direct view of it. Freed
   * when the queue closes; the view must not be used after that.
   * @throws FrontendError `OUT_OF_MEMORY`, `BAD_ARGUMENT` (the range is not one contiguous mapping).
   */
  pinBuffer(len: number): { readonly addr: GuestAddress; readonly bytes: Uint8Array } {
    const b = pinGuestBuffer(this.#options.allocator, this.#options.memory, len, `queue ${this.index}`);
    this.#pinned.push(b.addr);
    return b;
  }

  /** Puts `p`'s chain on the ring (not yet published); false (p rejected) for a bad buffer. */
  #add(p: Pending): boolean {
    try {
      this.#driver.add(p.readable, p.writable, p);
    } catch (err) {
      p.reject(new FrontendError("BAD_ARGUMENT", `queue ${this.index}: ${err instanceof Error ? err.message : String(err)}`, {}, { cause: err }));
      return false;
    }
    this.#inFlight++;
    return true;
  }

  /** Moves waiting requests onto the ring while descriptors are free; kicks once if needed. */
  #admit(): void {
    if (this.#paused) return;
    const w = this.#waiting;
    let added = false;
    for (let p = w[0]; p !== undefined && this.#driver.numFree >= p.readable.length + p.writable.length; p = w[0]) {
      w.shift();
      if (this.#add(p)) added = true;
      else if (p.owner === undefined) this.#deadlines.untrack(p);
      else p.queued = false;
    }
    if (added && this.#driver.publish()) this.#kick.signal();
  }

  /**
   * Convenience for drivers: copies `readable` into freshly allocated guest buffers, allocates
   * `writableLens` bytes of device-writable buffers, submits the chain, and returns copies of the
   * writable buffers after completion. Guest buffers are freed afterwards (kept when the request
   * failed, since the device may still write them).
   * @throws FrontendError as {@link DriverQueue.submit}, `OUT_OF_MEMORY`.
   */
  transfer(readable: readonly Uint8Array[], writableLens: readonly number[], timeoutMs?: number): Promise<TransferResult> {
    const o = this.#options;
    return transferChain(
      o.allocator,
      o.memory,
      readable,
      writableLens,
      (r, w) => this.submit(r, w, timeoutMs),
      () => this.#error !== undefined,
    );
  }

  async #pump(): Promise<void> {
    if (this.#pumping) return;
    this.#pumping = true;
    let lastWork = performance.now();
    try {
      while (this.#inFlight > 0 && this.#error === undefined) {
        const got = this.#collect();
        if (got < 0) return;
        if (this.#waiting.length > 0) this.#admit();
        if (this.#inFlight === 0) {
          // Idle: calls asked for again (they were suppressed while polling).
          if (this.#pollMs > 0) this.#driver.enableInterrupts();
          break;
        }
        if (this.#pollMs > 0) {
          const now = performance.now();
          if (got > 0) lastWork = now;
          if (now - lastWork < this.#pollMs) {
            // Busy: no call per burst; poll again after what the event loop has to do.
            this.#driver.disableInterrupts();
            await new Promise<void>((r) => setImmediate(r));
            continue;
          }
        }
        // Ask for the next interrupt (EVENT_IDX: used_event = what was collected), then re-check:
        // a completion published before the request was visible would otherwise never signal.
        if (this.#driver.enableInterrupts()) continue;
        try {
          await this.#call.wait();
        } catch {
          return; // closed: fail() rejected everything
        }
      }
    } finally {
      this.#pumping = false;
    }
  }

  /** Resolves the requests whose used elements the device published; -1 (the device failed) for a ring it broke. */
  #collect(): number {
    const used = this.#used.count > 0 ? new UsedBatch<Pending>(this.#driver.size) : this.#used; // in use: a callback collecting again
    try {
      this.#driver.collectUsedInto(used);
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      const e = new FrontendError("PROTOCOL", `queue ${this.index}: ${why}`, { request: "VIRTQUEUE" }, { cause: err });
      used.clear(); // what came before the bad element is still tracked: fail() rejects it with the rest
      this.#options.onFatal(e);
      this.fail(e);
      return -1;
    }
    const n = used.count;
    this.#batching++; // chains the callbacks submit are published together, after the round
    try {
      for (let i = 0; i < n; i++) {
        const p = used.take(i);
        if (p === undefined) continue;
        this.#inFlight--;
        if (p.owner === undefined) this.#deadlines.untrack(p);
        else p.queued = false;
        p.resolve(used.len[i] as number);
      }
      if (n > 0) this.#roundEnd?.();
    } finally {
      used.clear(); // after a callback that threw, too: the batch keeps no request alive
      this.#endBatch();
    }
    return n;
  }

  /**
   * The back-end was lost (docs/protocol.md#inflight-tracking-and-reconnect): requests submitted
   * from now on wait for the ring to restart, and no request times out meanwhile. @internal
   */
  pause(): void {
    this.#paused = true;
    this.#deadlines.disarm();
  }

  /**
   * Before the ring restarts on a new back-end: what the lost one completed is collected (those
   * requests resolve), then the ring is made ready so the new back-end serves each outstanding
   * request exactly once. Split: the outstanding chains are laid out again from the used index
   * (`SplitDriver.requeueOutstanding`). Packed: with `inflight` (the new back-end got the inflight
   * area) the ring stays as it is — the back-end resubmits what it had taken from its record and
   * resumes after it; without, the outstanding lists are laid out again from the used position
   * (`PackedDriver.requeueOutstanding`).
   * @returns the SET_VRING_BASE value and the number of outstanding requests.
   * @throws FrontendError `DEVICE_FAILED` when the lost back-end broke the ring. @internal
   */
  prepareRestart(inflight: boolean): { readonly base: number; readonly outstanding: number } {
    const driver = this.#driver;
    if (this.#collect() < 0) throw this.#error as FrontendError;
    if (driver instanceof SplitDriver) return { base: driver.requeueOutstanding(), outstanding: this.#inFlight };
    return { base: driver.requeueOutstanding(inflight ? undefined : (p) => p as Pending), outstanding: this.#inFlight };
  }

  /** The ring runs on the new back-end: deadlines count from now, waiting requests join, one kick. @internal */
  resume(): void {
    if (this.#error !== undefined) return;
    this.#paused = false;
    this.#deadlines.restart();
    this.#admit();
    this.#kick.signal();
    void this.#pump();
  }

  /** Rejects every pending request with `err` and closes the eventfds. Idempotent. @internal */
  fail(err: FrontendError): void {
    if (this.#error !== undefined) return;
    this.#error = err.code === "DEVICE_FAILED" ? err : new FrontendError("DEVICE_FAILED", err.message, err.detail, { cause: err });
    // Pending tokens are only reachable through the ring; reject them via a final sweep.
    this.#waiting.length = 0;
    const pending = this.#deadlines.drain();
    for (const p of pending) p.reject(this.#error);
    for (const p of this.#standing)
      if (p.queued === true) {
        p.queued = false;
        p.reject(this.#error);
      }
    this.#inFlight = 0;
    this.#kick.close();
    this.#call.close();
  }

  /** Closes the eventfds and frees the rings (after GET_VRING_BASE stopped the ring). @internal */
  close(): void {
    this.fail(new FrontendError("CLOSED", `queue ${this.index} closed`));
    this.#options.allocator.free(this.#ringBase);
    for (const a of this.#pinned.splice(0)) this.#options.allocator.free(a);
  }
}
