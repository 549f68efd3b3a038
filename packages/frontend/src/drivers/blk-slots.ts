/**
 * Reusable virtio-blk requests (docs/devices.md#virtio-blk): a pool of guest buffers pinned for the
 * queue's life, each with its descriptor lists built once, so that a request of up to
 * {@link SLOT_DATA_BYTES} costs no guest allocation, no translation and no promise of its own.
 * @module
 */
import type { GuestAddress } from "@vhostkit/regions";
import type { DriverQueue } from "../driver-queue.js";
import type { FrontendError } from "../errors.js";

/** Largest data part a pooled request carries (bytes); larger requests take the general path. */
export const SLOT_DATA_BYTES = 16 * 1024;
/** Where the parts sit in a slot's guest buffer: header, status byte, then the data. */
const STATUS_AT = 16;
const DATA_AT = 32;

/** A guest buffer handed to the ring whose length changes from request to request. */
interface SlotBuffer {
  readonly addr: bigint;
  len: number;
}

/** What a finished slot request hands back: the device's status byte and a view of the data part. */
export type SlotDone = (err: FrontendError | undefined, status: number, data: Uint8Array) => void;

/**
 * One pooled request: `[header 16][status 1, padding][data]` in one pinned guest buffer. The
 * descriptor lists (header · data · status for reads, header + data · status for writes, header ·
 * status for the rest) are arrays built once; only the data length changes.
 */
class Slot {
  readonly bytes: Uint8Array;
  readonly view: DataView;
  readonly data: SlotBuffer;
  /** Device-readable lists: header; header and data. */
  readonly head: readonly SlotBuffer[];
  readonly headData: readonly SlotBuffer[];
  /** Device-writable lists: data and status; status. */
  readonly dataStatus: readonly SlotBuffer[];
  readonly status: readonly SlotBuffer[];
  readonly onDone: (len: number) => void;
  readonly onFail: (err: FrontendError) => void;
  done: SlotDone | undefined;

  constructor(pool: SlotPool, addr: GuestAddress, bytes: Uint8Array) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const header = { addr, len: 16 };
    const status = { addr: addr + BigInt(STATUS_AT), len: 1 };
    this.data = { addr: addr + BigInt(DATA_AT), len: 0 };
    this.head = [header];
    this.headData = [header, this.data];
    this.dataStatus = [this.data, status];
    this.status = [status];
    this.onDone = () => pool.finish(this, undefined);
    this.onFail = (err) => pool.finish(this, err);
  }
}

/**
 * The slots of one queue, taken and given back in LIFO order (a warm buffer first). At most one per
 * descriptor of the queue: beyond that, callers take the general path.
 */
export class SlotPool {
  readonly #queue: DriverQueue;
  readonly #free: Slot[] = [];
  #count = 0;
  /** Pinning failed once (guest RAM exhausted or fragmented): no further attempts. */
  #exhausted = false;

  constructor(queue: DriverQueue) {
    this.#queue = queue;
  }

  /**
   * Posts one request through a slot: header (`type`, `sector`), `dataLen` bytes of data — read by
   * the device when `dataOut` is given (copied into the slot), written by it otherwise — and the
   * status byte, preset to 0xff so that a device that never wrote it is recognisable. A data part
   * the device writes is filled with 0xff first when `fill` is set (what the device left untouched
   * reads 0xff, as on the general path) and not cleared otherwise. `done` runs once from the completion round with the status and a view of the
   * data part that is valid during the call only. Returns false, without posting, when no slot is
   * free, `dataLen` exceeds {@link SLOT_DATA_BYTES} or the queue has stopped.
   */
  post(type: number, sector: bigint, dataLen: number, dataOut: Uint8Array | undefined, done: SlotDone, fill = false): boolean {
    if (dataLen > SLOT_DATA_BYTES || this.#queue.error !== undefined) return false;
    const s = this.#free.pop() ?? this.#grow();
    if (s === undefined) return false;
    const v = s.view;
    v.setUint32(0, type, true);
    v.setUint32(4, 0, true);
    v.setBigUint64(8, sector, true);
    s.bytes[STATUS_AT] = 0xff;
    s.data.len = dataLen;
    s.done = done;
    if (dataLen === 0) this.#queue.post(s.head, s.status, s.onDone, s.onFail);
    else if (dataOut !== undefined) {
      s.bytes.set(dataOut, DATA_AT);
      this.#queue.post(s.headData, s.status, s.onDone, s.onFail);
    } else {
      if (fill) s.bytes.fill(0xff, DATA_AT, DATA_AT + dataLen);
      this.#queue.post(s.head, s.dataStatus, s.onDone, s.onFail);
    }
    return true;
  }

  /** A slot's request ended: back to the pool (unless it failed: the device may still write it) and report. */
  finish(s: Slot, err: FrontendError | undefined): void {
    const done = s.done as SlotDone;
    s.done = undefined;
    const data = s.bytes.subarray(DATA_AT, DATA_AT + s.data.len);
    try {
      done(err, s.bytes[STATUS_AT] as number, data);
    } catch (e) {
      // A throwing callback must not cut the completion round short: report it as uncaught, later.
      queueMicrotask(() => {
        throw e;
      });
    }
    // Back to the pool only now: what `done` submitted took another slot, so `data` stayed valid.
    if (err === undefined) this.#free.push(s);
  }

  #grow(): Slot | undefined {
    if (this.#exhausted || this.#count >= this.#queue.size) return undefined;
    try {
      const { addr, bytes } = this.#queue.pinBuffer(DATA_AT + SLOT_DATA_BYTES);
      this.#count++;
      return new Slot(this, addr, bytes);
    } catch {
      this.#exhausted = true;
      return undefined;
    }
  }
}
