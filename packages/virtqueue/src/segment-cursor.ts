/**
 * Iterating a popped chain's buffers as host views, splitting where a buffer crosses regions.
 *
 * @module
 */
import type { GuestAddress, GuestMemory, HostWindow } from "@vhostkit/regions";
import type { ChainBatch } from "./chain-batch.js";
import { VirtqueueError } from "./errors.js";

/**
 * What a segment is:
 * - `"host"`: `bytes` is a live view of guest memory (valid until the memory table changes);
 * - `"remote"`: the range is outside every mapped region (a translation miss, e.g. another device's
 *   VIRTIO Shared Memory Region). Only `addr` and `len` are set; serve it with
 *   `GuestMemory.read` / `write` (the MEM_READ/MEM_WRITE fallback implements those), or use
 *   {@link readChain} / {@link writeChain}, which do this for you.
 */
export type SegmentKind = "host" | "remote";

const EMPTY = new Uint8Array(0);

/**
 * Dirty page logging (docs/protocol.md#dirty-page-logging): records that the device wrote `len`
 * bytes (>= 1) of guest memory at guest-physical address `gpa`. Must not throw.
 */
export interface DirtyLogger {
  /** Marks the pages of `[gpa, gpa + len)` written. */
  mark(gpa: number | bigint, len: number): void;
}

/** Receives guest errors found while iterating (the queue marks itself broken). */
export interface GuestErrorSink {
  /** Records `err` (marks the queue broken) and returns it for throwing. */
  guestError(err: VirtqueueError): VirtqueueError;
  /** Where {@link writeChain} logs the bytes it writes through host views (`undefined`: not logging). */
  readonly dirtyLog?: DirtyLogger | undefined;
}

/**
 * A reusable cursor over the segments of one chain of a {@link ChainBatch}. Obtain it from
 * {@link SplitQueue.segments}, then loop `while (cur.next()) { ... }`; the fields describe the current
 * segment. Device-readable segments come first, then device-writable ones. A descriptor that spans
 * two regions yields two (or more) segments; one that is not mapped yields a `"remote"` segment for
 * the rest of the descriptor. The cursor allocates only the `bytes` subarray of each host segment.
 */
export class SegmentCursor {
  /** Kind of the current segment. */
  kind: SegmentKind = "host";
  /**
   * A live view the current `"host"` segment lies in: its bytes are `view[viewOffset, viewOffset + len)`.
   * Copying through `view` and `viewOffset` (`view.set(src, viewOffset)`) allocates nothing; {@link SegmentCursor.bytes}
   * is the same range as a subarray of its own. Empty for `"remote"`.
   */
  view: Uint8Array = EMPTY;
  /** Index of the current segment's first byte in {@link SegmentCursor.view}. */
  viewOffset = 0;
  /** Length of the current segment in bytes (>= 1). */
  len = 0;
  /** True when the current segment is device-writable (the device may write into it). */
  writable = false;

  #batch: ChainBatch | undefined;
  #memory: GuestMemory | undefined;
  #sink: GuestErrorSink | undefined;
  /** The memory has `translateNumber`: addresses below 2^53 stay numbers (no BigInt per segment). */
  #numeric = false;
  /** The memory has `translateInto` too: a host segment costs no allocation. */
  #into = false;
  readonly #window: HostWindow = { view: EMPTY, offset: 0, length: 0, writable: true };
  /** `bytes` of the current segment once asked for. */
  #bytes: Uint8Array | undefined;
  /** Index in the batch's descriptor arrays of the chain's next descriptor. */
  #nextDesc = 0;
  /** Index just past the chain's last descriptor. */
  #chainEnd = 0;
  /** Where the rest of the current descriptor starts: a number when >= 0, else `#descAddr`. */
  #descAddrN = -1;
  #descAddr = 0n;
  #descLeft = 0;
  /** The current segment's address: a number when >= 0, else `#addr`. */
  #addrN = 0;
  #addr = 0n;

  /** Host view of the current segment (`"host"` only; empty for `"remote"`): a subarray of {@link SegmentCursor.view}, made on first access. */
  get bytes(): Uint8Array {
    if (this.kind !== "host" || this.len === 0) return EMPTY;
    this.#bytes ??= this.view.subarray(this.viewOffset, this.viewOffset + this.len);
    return this.#bytes;
  }

  /** Guest-physical address of the current segment. */
  get addr(): GuestAddress {
    return (this.#addrN >= 0 ? BigInt(this.#addrN) : this.#addr) as GuestAddress;
  }

  /** @internal Positions the cursor before the first segment of chain `chain` of `batch`. */
  reset(batch: ChainBatch, chain: number, memory: GuestMemory, sink: GuestErrorSink): this {
    if (!Number.isInteger(chain) || chain < 0 || chain >= batch.count) throw new RangeError(`chain ${chain} not in batch of ${batch.count}`);
    this.#batch = batch;
    this.#memory = memory;
    this.#sink = sink;
    this.#numeric = typeof memory.translateNumber === "function";
    this.#into = this.#numeric && typeof memory.translateInto === "function";
    this.#nextDesc = batch.starts[chain] ?? 0;
    this.#chainEnd = batch.starts[chain + 1] ?? 0;
    this.#descLeft = 0;
    this.#addrN = 0;
    this.len = 0;
    this.view = EMPTY;
    this.viewOffset = 0;
    this.#bytes = undefined;
    return this;
  }

  /**
   * Advances to the next segment. Returns false after the last one.
   * @throws VirtqueueError `READ_ONLY_BUFFER` (guest: a device-writable buffer in read-only memory)
   *   or `ADDRESS_WRAP`; the queue is marked broken.
   */
  next(): boolean {
    const b = this.#batch;
    const mem = this.#memory;
    if (b === undefined || mem === undefined) return false;
    if (this.#descLeft === 0) {
      if (this.#nextDesc >= this.#chainEnd) return false;
      const j = this.#nextDesc++;
      this.#descLeft = b.length(j);
      this.writable = b.isWritable(j);
      this.#descAddrN = this.#numeric ? b.addressNumber(j) : -1;
      if (this.#descAddrN < 0) this.#descAddr = b.address(j);
    }
    const an = this.#descAddrN;
    const left = this.#descLeft;
    this.#addrN = an;
    if (an < 0) this.#addr = this.#descAddr;
    this.#bytes = undefined;
    const w = this.#window;
    // A span must make progress (the interface promises length >= 1); an empty one is treated as
    // a miss so that a faulty GuestMemory cannot make this loop spin.
    if (an >= 0 && this.#into && mem.translateInto!(an, left, w) && w.length > 0) {
      if (this.writable && !w.writable) throw this.#readOnly();
      this.kind = "host";
      this.view = w.view;
      this.viewOffset = w.offset;
      this.len = w.length < left ? w.length : left;
    } else {
      this.#translated(mem, an, left);
    }
    this.#descLeft = left - this.len;

    if (this.#descLeft > 0) {
      // Only a descriptor split across regions gets here; its rest may pass 2^53 (then BigInt).
      const nextN = an + this.len;
      if (an >= 0 && Number.isSafeInteger(nextN)) this.#descAddrN = nextN;
      else {
        this.#descAddr = (an >= 0 ? BigInt(an) : this.#descAddr) + BigInt(this.len);
        this.#descAddrN = -1;
      }
    }
    return true;
  }

  /** The segment at `an` (or the BigInt address) through `translateNumber` / `translate`: a host span, or a remote range. */
  #translated(mem: GuestMemory, an: number, left: number): void {
    const r = an >= 0 ? mem.translateNumber!(an, left) : mem.translate(this.#descAddr as GuestAddress, left);
    if (r.ok && r.span.bytes.length > 0) {
      const span = r.span;
      if (this.writable && !span.writable) throw this.#readOnly();
      const n = span.bytes.length < left ? span.bytes.length : left;
      this.kind = "host";
      this.view = span.bytes;
      this.viewOffset = 0;
      this.len = n;
      if (n === span.bytes.length) this.#bytes = span.bytes;
      return;
    }
    if (!r.ok && r.miss.kind === "overflow") {
      throw this.#fail(new VirtqueueError("ADDRESS_WRAP", `buffer at 0x${this.addr.toString(16)} + ${left} wraps`, { actual: this.addr }));
    }
    this.kind = "remote";
    this.view = EMPTY;
    this.viewOffset = 0;
    this.len = left;
  }

  #readOnly(): VirtqueueError {
    return this.#fail(
      new VirtqueueError("READ_ONLY_BUFFER", `device-writable buffer at 0x${this.addr.toString(16)} is in read-only memory`, { actual: this.addr }),
    );
  }

  /**
   * Logs the first `n` bytes of the current segment as written when the queue logs dirty pages
   * (its {@link GuestErrorSink.dirtyLog}); nothing otherwise. {@link writeChain} calls it; a device
   * that writes `bytes` itself calls it too.
   */
  markWritten(n: number): void {
    const log = this.#sink?.dirtyLog;
    if (log !== undefined && n > 0) log.mark(this.#addrN >= 0 ? this.#addrN : this.#addr, n);
  }

  #fail(err: VirtqueueError): VirtqueueError {
    this.#descLeft = 0;
    this.#nextDesc = this.#chainEnd;
    return this.#sink === undefined ? err : this.#sink.guestError(err);
  }
}

/**
 * Copies the device-readable bytes of the cursor's chain into `dst`, starting at the cursor's current
 * position (normally freshly reset). Host segments are copied directly; `"remote"` segments are read
 * through `memory.read` (the MEM_READ fallback when the device uses one), so device code does not
 * change when buffers live outside the memory table. Stops at the first device-writable segment or
 * when `dst` is full.
 *
 * @returns the number of bytes copied (<= dst.length).
 */
export async function readChain(cursor: SegmentCursor, memory: GuestMemory, dst: Uint8Array): Promise<number> {
  let done = 0;
  while (done < dst.length && cursor.next()) {
    if (cursor.writable) break;
    const n = Math.min(cursor.len, dst.length - done);
    if (cursor.kind === "host") dst.set(n === cursor.len ? cursor.bytes : cursor.bytes.subarray(0, n), done);
    else await memory.read(cursor.addr, dst.subarray(done, done + n));
    done += n;
  }
  return done;
}

/**
 * Copies `src` into the device-writable segments of the cursor's chain (skipping readable ones),
 * through host views or, for `"remote"` segments, `memory.write`. Bytes written through host views
 * are logged when the queue logs dirty pages ({@link SegmentCursor.markWritten}).
 *
 * @returns the number of bytes written: the value for the used element's `len`.
 * @throws VirtqueueError `CHAIN_OVERRUN` when the writable segments hold fewer than `src.length`
 *   bytes (the bytes that fit were written).
 */
export async function writeChain(cursor: SegmentCursor, memory: GuestMemory, src: Uint8Array): Promise<number> {
  let done = 0;
  while (done < src.length && cursor.next()) {
    if (!cursor.writable) continue;
    const n = Math.min(cursor.len, src.length - done);
    if (cursor.kind === "host") {
      cursor.view.set(done === 0 && n === src.length ? src : src.subarray(done, done + n), cursor.viewOffset);
      cursor.markWritten(n);
    } else await memory.write(cursor.addr, src.subarray(done, done + n));
    done += n;
  }
  if (done < src.length) {
    throw new VirtqueueError("CHAIN_OVERRUN", `chain has ${done} writable bytes, ${src.length} requested`, { expected: src.length, actual: done });
  }
  return done;
}
