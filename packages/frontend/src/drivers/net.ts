/**
 * virtio-net driver (device id 1): receive and transmit queue pairs (queue 2n receives, 2n+1
 * transmits), the 12-byte `virtio_net_hdr_v1` on every frame, mergeable receive buffers, several
 * queue pairs with MQ, and the control queue when the device offers one. No offloads: frames go
 * out whole with a zero header and are taken in whole.
 * @module
 */
import { VirtioFeature } from "@vhostkit/wire";
import type { GuestAddress } from "@vhostkit/regions";
import { FrontendError, isFrontendError } from "../errors.js";
import type { Device } from "../device.js";
import type { DriverQueue } from "../driver-queue.js";
import type { StandingChain } from "../driver-queue-types.js";
import { decodeNetConfig, encodeMqPairsSet, NET_CTRL_OK, NET_HEADER_SIZE, NET_STATUS_LINK_UP, NetFeature, rxNumBuffers, writeTxHeader } from "./net-header.js";

import type { NetCounters, NetFrameBatch } from "./net-types.js";

export type { NetCounters, NetFrameBatch } from "./net-types.js";

/** Options of {@link NetDriver.attach}. */
export interface NetDriverOptions {
  /** Queue pairs to use (default 1); more than 1 needs MQ. */
  readonly queuePairs?: number;
  /** Size of every queue (default 256). */
  readonly queueSize?: number;
  /** Bytes per receive buffer, header included (default 2048; at least 1526 without MRG_RXBUF). */
  readonly rxBufferSize?: number;
  /** Largest frame sent, without the header (default 1514). */
  readonly maxFrame?: number;
  /** Use MRG_RXBUF when offered (default true). */
  readonly mergeable?: boolean;
  /**
   * Keep polling the rings for this many µs after the last completion, with the device's calls
   * suppressed meanwhile (default 200; 0: one round per call). See {@link DriverQueue.setPolling}.
   */
  readonly pollMicros?: number;
  /**
   * The callback of received frames, installed before any receive buffer is posted (a device may
   * fill them at once). Same as {@link NetDriver.onFrame}.
   */
  readonly onFrame?: NetFrameCallback;
  /**
   * The callback of received frames a round at a time, installed before any receive buffer is
   * posted; when set, {@link NetDriverOptions.onFrame} is not called. Same as {@link NetDriver.onFrames}.
   */
  readonly onFrames?: NetFramesCallback;
}

/** Receives a round of frames on `pair` (see {@link NetFrameBatch}); `driver` to answer from inside the call. */
export type NetFramesCallback = (batch: NetFrameBatch, pair: number, driver: NetDriver) => void;

/**
 * Receives one frame: `frame` is a view of guest memory valid during the call only, `pair` the
 * queue pair it came in on, `driver` the driver (to answer from inside the call).
 */
export type NetFrameCallback = (frame: Uint8Array, pair: number, driver: NetDriver) => void;

/** {@link NetDriverOptions.pollMicros} by default. */
const DEFAULT_POLL_MICROS = 200;

/** A pair's round of received frames being gathered, and the receive buffers it holds. */
interface RxBatch extends NetFrameBatch {
  count: number;
  readonly buffers: Uint8Array[];
  readonly offsets: number[];
  readonly lengths: number[];
  /** Receive buffers whose frames are in the batch: posted again after the callback. */
  readonly held: Slot[];
}

/** A standing guest buffer with its descriptor and completion callback, made once. */
interface Slot {
  readonly addr: GuestAddress;
  readonly bytes: Uint8Array;
  /** The chain's one buffer (its `len` set per frame on transmit). */
  readonly buffer: { addr: GuestAddress; len: number };
  /** The queue's standing chain of `buffer`, made available again after every completion. */
  chain: StandingChain;
}

/** One receive queue and one transmit queue. */
interface Pair {
  readonly index: number;
  readonly rx: DriverQueue;
  readonly tx: DriverQueue;
  readonly txFree: Slot[];
  /** Receive buffers in the ring. */
  posted: number;
  /** A merged frame being assembled: its parts so far and how many buffers are still to come. */
  merge: { readonly parts: Uint8Array[]; remaining: number } | undefined;
  /** Waiters for a free transmit slot. */
  readonly txWaiters: (() => void)[];
  /** The round of frames for {@link NetDriver.onFrames}. */
  readonly batch: RxBatch;
}

/**
 * A virtio-net driver on a {@link Device}. Receive buffers stay posted (refilled in one batch per
 * round of completions); {@link NetDriver.send} copies a frame behind a zero header into a
 * standing transmit buffer, and {@link NetDriver.burst} publishes several with one kick. Received
 * frames reach the {@link NetDriver.onFrame} callback as views valid during the call only, or the
 * {@link NetDriver.onFrames} callback a round of completions at a time, read in place.
 * A device that breaks the receive format (a used length shorter than the header or longer than
 * the buffer, `num_buffers` of 0 or beyond the buffers posted) fails the driver with `PROTOCOL`.
 */
export class NetDriver {
  /** The device. */
  readonly device: Device;
  /** The negotiated virtio-net feature bits. */
  readonly features: bigint;
  /** The MAC address from the config space (MAC negotiated and a config space read), else undefined. */
  readonly mac: Uint8Array | undefined;
  /** The link state from the config space (STATUS negotiated), else undefined. */
  readonly linkUp: boolean | undefined;
  /** True when MRG_RXBUF was negotiated. */
  readonly mergeable: boolean;
  /** Counters since attach. */
  readonly counters: NetCounters = { rxFrames: 0, rxBytes: 0, txFrames: 0, txBytes: 0 };
  /** Resolves when the device broke the receive format or a queue failed. */
  readonly failed: Promise<FrontendError>;
  readonly #pairs: Pair[];
  readonly #rxBufferSize: number;
  readonly #maxFrame: number;
  /** Until a callback is set, frames are counted and dropped. */
  #onFrame: NetFrameCallback = () => undefined;
  #onFrames: NetFramesCallback | undefined;
  #failure: FrontendError | undefined;
  #resolveFailed!: (e: FrontendError) => void;
  #closed = false;

  private constructor(
    device: Device,
    features: bigint,
    queues: readonly DriverQueue[],
    pairs: number,
    options: Required<Omit<NetDriverOptions, "onFrame" | "onFrames">>,
    callbacks: Pick<NetDriverOptions, "onFrame" | "onFrames">,
  ) {
    this.device = device;
    if (callbacks.onFrame !== undefined) this.#onFrame = callbacks.onFrame;
    this.#onFrames = callbacks.onFrames;
    this.features = features;
    const config = decodeNetConfig(device.info.config, features);
    this.mac = config.mac;
    this.linkUp = config.status === undefined ? undefined : (config.status & NET_STATUS_LINK_UP) !== 0;
    this.mergeable = (features & NetFeature.MRG_RXBUF) !== 0n;
    this.#rxBufferSize = options.rxBufferSize;
    this.#maxFrame = options.maxFrame;
    this.failed = new Promise((r) => (this.#resolveFailed = r));
    this.#pairs = [];
    for (let i = 0; i < pairs; i++) {
      const rx = queues[2 * i] as DriverQueue;
      const tx = queues[2 * i + 1] as DriverQueue;
      const txFree: Slot[] = [];
      const batch: RxBatch = { count: 0, buffers: [], offsets: [], lengths: [], held: [] };
      const pair: Pair = { index: i, rx, tx, txFree, posted: 0, merge: undefined, txWaiters: [], batch };
      for (let k = 0; k < tx.size; k++) {
        const slot = this.#slot(tx, NET_HEADER_SIZE + this.#maxFrame, true, () => this.#sent(pair, slot));
        txFree.push(slot);
      }
      this.#pairs.push(pair);
      rx.setPolling(options.pollMicros);
      rx.setRoundEnd(() => this.#roundEnd(pair));
      tx.setPolling(options.pollMicros);
      rx.batch(() => {
        for (let k = 0; k < rx.size; k++) {
          const slot = this.#slot(rx, this.#rxBufferSize, false, (len) => this.#received(pair, slot, len));
          this.#post(pair, slot);
        }
      });
    }
  }

  /** A pinned buffer of `len` bytes and its standing chain (device-readable for transmit). */
  #slot(q: DriverQueue, len: number, readable: boolean, done: (len: number) => void): Slot {
    const b = q.pinBuffer(len);
    const buffer = { addr: b.addr, len };
    const chain = readable ? q.standing([buffer], [], done, this.#onQueueError) : q.standing([], [buffer], done, this.#onQueueError);
    return { addr: b.addr, bytes: b.bytes, buffer, chain };
  }

  /**
   * Negotiates (VERSION_1; MRG_RXBUF, MAC, STATUS and MQ when offered; CTRL_VQ with MQ when the
   * device has a queue after its last pair), starts the queues, posts the receive buffers and, with
   * a control queue, sets the number of queue pairs (VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET).
   * @throws FrontendError `BAD_ARGUMENT`, `NEGOTIATION` (more pairs than the device has),
   *   `REFUSED` (the device did not ack the pair count), and the codes of {@link Device.start}.
   */
  static async attach(device: Device, options: NetDriverOptions = {}): Promise<NetDriver> {
    const o: Required<Omit<NetDriverOptions, "onFrame" | "onFrames">> = {
      queuePairs: options.queuePairs ?? 1,
      queueSize: options.queueSize ?? 256,
      rxBufferSize: options.rxBufferSize ?? 2048,
      maxFrame: options.maxFrame ?? 1514,
      mergeable: options.mergeable ?? true,
      pollMicros: options.pollMicros ?? DEFAULT_POLL_MICROS,
    };
    const offered = device.info.features;
    const pairs = o.queuePairs;
    if (!Number.isInteger(pairs) || pairs < 1 || pairs > 0x8000)
      throw new FrontendError("BAD_ARGUMENT", `virtio-net: ${pairs} queue pairs (1 to 32768)`, { actual: pairs });
    if (!Number.isInteger(o.maxFrame) || o.maxFrame < 60 || o.maxFrame > 65535)
      throw new FrontendError("BAD_ARGUMENT", `virtio-net: largest frame ${o.maxFrame} bytes (60 to 65535)`, { actual: o.maxFrame });
    if (!Number.isFinite(o.pollMicros) || o.pollMicros < 0)
      throw new FrontendError("BAD_ARGUMENT", `virtio-net: polling for ${o.pollMicros} µs`, { actual: o.pollMicros });
    let features = VirtioFeature.VERSION_1 | (offered & (NetFeature.MAC | NetFeature.STATUS));
    if (o.mergeable) features |= offered & NetFeature.MRG_RXBUF;
    const minRx = (features & NetFeature.MRG_RXBUF) !== 0n ? NET_HEADER_SIZE + 1 : NET_HEADER_SIZE + 1514;
    if (!Number.isInteger(o.rxBufferSize) || o.rxBufferSize < minRx || o.rxBufferSize > 65536)
      throw new FrontendError("BAD_ARGUMENT", `virtio-net: receive buffers of ${o.rxBufferSize} bytes (${minRx} to 65536)`, { actual: o.rxBufferSize });
    let ctrl: number | undefined;
    if ((offered & NetFeature.MQ) !== 0n) {
      // MQ whenever offered (one pair to start, like a guest driver); the pair count is set below.
      features |= NetFeature.MQ;
      const max = decodeNetConfig(device.info.config, features).maxQueuePairs ?? Math.floor(device.info.queueNum / 2);
      if (pairs > max) throw new FrontendError("NEGOTIATION", `virtio-net: ${pairs} queue pairs, the device has ${max}`, { expected: pairs, actual: max });
      // The control queue follows the last possible pair; a vhost-user device that leaves it to
      // the front-end (DPDK's) has no such queue, and its pairs are enabled by SET_VRING_ENABLE.
      if ((offered & NetFeature.CTRL_VQ) !== 0n && 2 * max < device.info.queueNum) {
        features |= NetFeature.CTRL_VQ;
        ctrl = 2 * max;
      }
    } else if (pairs > 1)
      throw new FrontendError("NEGOTIATION", `virtio-net: ${pairs} queue pairs, but the device does not offer MQ`, {
        request: "GET_FEATURES",
        actual: offered,
      });
    const indices = Array.from({ length: 2 * pairs }, (_, i) => i);
    const queues = await device.start({ queues: ctrl === undefined ? indices : [...indices, ctrl], queueSize: o.queueSize, features });
    const acked = device.ackedFeatures ?? features;
    if (ctrl !== undefined) {
      const r = await (queues[2 * pairs] as DriverQueue).transfer([encodeMqPairsSet(pairs)], [1]);
      const ack = r.buffers[0]?.[0];
      if (r.len < 1 || ack !== NET_CTRL_OK)
        throw new FrontendError("REFUSED", `virtio-net: the device did not accept ${pairs} queue pairs (ack ${ack})`, {
          request: "VIRTIO_NET_CTRL_MQ",
          actual: ack ?? -1,
        });
    }
    return new NetDriver(device, acked, queues, pairs, o, options);
  }

  /** Queue pairs in use. */
  get queuePairs(): number {
    return this.#pairs.length;
  }

  /** The failure, once there is one. */
  get failure(): FrontendError | undefined {
    return this.#failure;
  }

  /**
   * Sets the callback of received frames (`frame` is a view of guest memory, valid during the call
   * only). Frames that arrived before it was set were counted and dropped: to see every frame, give
   * it to {@link NetDriver.attach} as {@link NetDriverOptions.onFrame}.
   */
  onFrame(f: NetFrameCallback): void {
    this.#onFrame = f;
  }

  /**
   * Sets the callback of received frames a round at a time (one call per round of completions,
   * the frames read in place: {@link NetFrameBatch}); while set, the {@link NetDriver.onFrame}
   * callback is not called. Undefined goes back to one call per frame.
   */
  onFrames(f: NetFramesCallback | undefined): void {
    this.#onFrames = f;
  }

  #pair(i: number): Pair {
    const p = this.#pairs[i];
    if (p === undefined) throw new FrontendError("BAD_ARGUMENT", `virtio-net: no queue pair ${i} (${this.#pairs.length} in use)`, { actual: i });
    return p;
  }

  /** Transmit buffers free on `pair` now. */
  txFree(pair = 0): number {
    return this.#pair(pair).txFree.length;
  }

  /** Resolves once `pair` has a free transmit buffer (at once when it has one), or the driver failed. */
  txReady(pair = 0): Promise<void> {
    const p = this.#pair(pair);
    if (p.txFree.length > 0 || this.#failure !== undefined || this.#closed) return Promise.resolve();
    return new Promise((resolve) => p.txWaiters.push(resolve));
  }

  /**
   * Queues `frame` (Ethernet, without the virtio header) on `pair`. False when every transmit
   * buffer is in flight (nothing queued): wait with {@link NetDriver.txReady}.
   * @throws FrontendError `BAD_ARGUMENT` (frame longer than `maxFrame`), the failure once failed.
   */
  send(frame: Uint8Array, pair = 0): boolean {
    if (this.#failure !== undefined) throw this.#failure;
    if (this.#closed) throw new FrontendError("CLOSED", "virtio-net driver closed");
    if (frame.byteLength > this.#maxFrame)
      throw new FrontendError("BAD_ARGUMENT", `virtio-net: frame of ${frame.byteLength} bytes, largest ${this.#maxFrame}`, { actual: frame.byteLength });
    const p = this.#pair(pair);
    const slot = p.txFree.pop();
    if (slot === undefined) return false;
    slot.bytes.set(frame, NET_HEADER_SIZE);
    this.#queue(p, slot, frame.byteLength);
    return true;
  }

  /** Makes transmit buffer `slot`, holding a frame of `len` bytes after the header, available. */
  #queue(p: Pair, slot: Slot, len: number): void {
    writeTxHeader(slot.bytes);
    slot.buffer.len = NET_HEADER_SIZE + len;
    p.tx.repost(slot.chain);
  }

  /**
   * Queues up to `n` frames written in place, without a copy: `write(buf, off, i)` writes frame
   * `i` into a transmit buffer from byte `off` (at most `maxFrame` bytes) and returns its length.
   * The same transmit buffer is the same `buf` object every time it comes round, and it still holds
   * what was written there last (the device only reads it), so a writer may rewrite only what
   * changed. One avail index update and at most one kick; stops early when the transmit buffers run
   * out. Returns how many were queued.
   * @throws FrontendError `BAD_ARGUMENT` (a length below 0 or beyond `maxFrame`: that frame and
   *   the rest are not queued, the ones before are), `CLOSED`, the failure once failed.
   */
  burstInPlace(n: number, write: (buf: Uint8Array, off: number, i: number) => number, pair = 0): number {
    if (this.#failure !== undefined) throw this.#failure;
    if (this.#closed) throw new FrontendError("CLOSED", "virtio-net driver closed");
    const p = this.#pair(pair);
    return p.tx.batch(() => {
      let k = 0;
      for (; k < n; k++) {
        const slot = p.txFree.pop();
        if (slot === undefined) break;
        const len = write(slot.bytes, NET_HEADER_SIZE, k);
        if (!Number.isInteger(len) || len < 0 || len > this.#maxFrame) {
          p.txFree.push(slot);
          throw new FrontendError("BAD_ARGUMENT", `virtio-net: frame of ${len} bytes written, largest ${this.#maxFrame}`, { actual: len });
        }
        this.#queue(p, slot, len);
      }
      return k;
    });
  }

  /** A transmit buffer came back: count it, free it, wake one waiter. */
  #sent(p: Pair, slot: Slot): void {
    this.counters.txFrames++;
    this.counters.txBytes += slot.buffer.len - NET_HEADER_SIZE;
    p.txFree.push(slot);
    p.txWaiters.shift()?.();
  }

  readonly #onQueueError = (e: FrontendError): void => this.#fail(e);

  /** Queues as many of `frames` as there are free buffers, made available with one kick; returns how many. */
  burst(frames: readonly Uint8Array[], pair = 0): number {
    const p = this.#pair(pair);
    return p.tx.batch(() => {
      let n = 0;
      while (n < frames.length && this.send(frames[n] as Uint8Array, pair)) n++;
      return n;
    });
  }

  /**
   * Queues up to `n` frames made by `frame(i)` (each copied at once, so it may reuse one buffer)
   * with one kick at most; stops early when the transmit buffers run out. Returns how many.
   */
  burstWith(n: number, frame: (i: number) => Uint8Array, pair = 0): number {
    const p = this.#pair(pair);
    return p.tx.batch(() => {
      let k = 0;
      while (k < n && this.send(frame(k), pair)) k++;
      return k;
    });
  }

  /** Posts one receive buffer (again); its completion is handled in used-ring order. */
  #post(p: Pair, slot: Slot): void {
    p.posted++;
    p.rx.repost(slot.chain);
  }

  #received(p: Pair, slot: Slot, len: number): void {
    const posted = p.posted--;
    if (this.#failure !== undefined || this.#closed) return;
    try {
      if (len > slot.bytes.byteLength)
        throw new FrontendError("PROTOCOL", `virtio-net rx: the device used ${len} bytes of a ${slot.bytes.byteLength}-byte buffer`, {
          request: "VIRTQUEUE",
          expected: slot.bytes.byteLength,
          actual: len,
        });
      const m = p.merge;
      if (m === undefined) {
        const n = rxNumBuffers(slot.bytes, len, this.mergeable, posted);
        if (n === 1 && this.#onFrames !== undefined) {
          // Read in place by the round's callback; the buffer goes back to the device after it.
          this.#gather(p, slot.bytes, NET_HEADER_SIZE, len - NET_HEADER_SIZE);
          p.batch.held.push(slot);
          return;
        }
        if (n === 1) this.#deliver(p, slot.bytes.subarray(NET_HEADER_SIZE, len));
        else p.merge = { parts: [slot.bytes.slice(NET_HEADER_SIZE, len)], remaining: n - 1 };
      } else {
        m.parts.push(slot.bytes.slice(0, len));
        if (--m.remaining === 0) {
          p.merge = undefined;
          const whole = new Uint8Array(m.parts.reduce((s, b) => s + b.byteLength, 0));
          let at = 0;
          for (const b of m.parts) {
            whole.set(b, at);
            at += b.byteLength;
          }
          if (this.#onFrames !== undefined) this.#gather(p, whole, 0, whole.byteLength);
          else this.#deliver(p, whole);
        }
      }
    } catch (e) {
      this.#fail(e);
      return;
    }
    // Inside the completion round: the queue publishes every buffer posted again at its end (one
    // avail index update, no kick when the device asked for none).
    this.#post(p, slot);
  }

  /** Adds a frame to `p`'s round. */
  #gather(p: Pair, buffer: Uint8Array, offset: number, length: number): void {
    const b = p.batch;
    this.counters.rxFrames++;
    this.counters.rxBytes += length;
    b.buffers[b.count] = buffer;
    b.offsets[b.count] = offset;
    b.lengths[b.count] = length;
    b.count++;
  }

  /** The end of a round of receive completions: the gathered frames go to the callback, their buffers back to the device. */
  #roundEnd(p: Pair): void {
    const b = p.batch;
    if (b.count === 0 && b.held.length === 0) return;
    const f = this.#onFrames;
    const live = this.#failure === undefined && !this.#closed;
    if (live && f !== undefined && b.count > 0) {
      try {
        f(b, p.index, this);
      } catch (e) {
        queueMicrotask(() => {
          throw e;
        });
      }
    }
    b.count = 0;
    if (live) for (const s of b.held) this.#post(p, s);
    b.held.length = 0;
  }

  #deliver(p: Pair, frame: Uint8Array): void {
    this.counters.rxFrames++;
    this.counters.rxBytes += frame.byteLength;
    try {
      this.#onFrame(frame, p.index, this);
    } catch (e) {
      // The callback runs inside the ring's completion round: its exception must not cut that
      // round short (nor pass for the device's fault). It surfaces on its own.
      queueMicrotask(() => {
        throw e;
      });
    }
  }

  #fail(e: unknown): void {
    if (this.#failure !== undefined || this.#closed) return;
    this.#failure = isFrontendError(e) ? e : new FrontendError("PROTOCOL", String(e));
    for (const p of this.#pairs) for (const w of p.txWaiters.splice(0)) w();
    this.#resolveFailed(this.#failure);
  }

  /** Stops delivering frames and wakes transmit waiters. The device stays open. Idempotent. */
  close(): void {
    this.#closed = true;
    for (const p of this.#pairs) for (const w of p.txWaiters.splice(0)) w();
  }
}
