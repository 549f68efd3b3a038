/**
 * The receive side of an `Endpoint`: vhost-user frames cut out of a byte stream read ahead into one
 * reusable native buffer, with each read's fds given to the message they came with.
 *
 * **One read per message.** A `recvmsg` asks for all the free room of the buffer, so header and
 * payload (and any frames queued behind them) come in one system call; frames that arrived together
 * are then served from the buffer without another. A partial frame stays at the front of the buffer
 * (moved there before the next read) until the rest arrives.
 *
 * **Which message the fds belong to.** The sender attaches fds to the first byte of a message's
 * header (docs/protocol.md#file-descriptors). On an AF_UNIX stream socket the kernel ends a
 * `recvmsg` right after the queued segment that carried fds, and a conforming sender writes a
 * message (with its fds) in one `sendmsg`; so the fds of a read belong to the message whose frame
 * begins last in the bytes read so far. A read with fds that holds no byte of that message's header
 * (a read entirely inside a payload) is `FDS_ON_BODY`. A sender that attaches fds to a payload whose
 * header arrives in the same read cannot be told apart from one that sent them with the header:
 * those fds count for that message (its `fdsAllowed` and `maxFds` still apply).
 *
 * **No empty read.** The socket is registered edge-triggered, which obliges a reader to read until
 * EAGAIN before waiting, unless it knows the kernel queue was empty: a read that returned fewer
 * bytes than asked, carried no fds and met no hang-up knows exactly that. A stream `recvmsg` with
 * `MSG_DONTWAIT` returns short only when the queue ran dry, after a segment with fds (excluded
 * here), at a writer with other credentials (needs `SO_PASSCRED`, never set here) or at an
 * out-of-band mark (not used by vhost-user; a peer that sends one only delays its own messages
 * until it writes again). Every byte queued after that moment raises a new edge, which the
 * {@link Watch} keeps until the next wait; a hang-up before it is seen by the watch (then the
 * reader reads, to find the EOF). So the next wait goes straight to the reactor, and a round trip
 * costs one `recvmsg` per message instead of three.
 * @module
 */
import type { OwnedFd } from "./owned-fd.js";
import { TransportError } from "./transport-error.js";
import { AGAIN, recvOnce } from "./recv-once.js";
import { IoBlock } from "./io-block.js";
import { addressOf } from "./sys/socket.js";
import { HEADER_SIZE } from "@vhostkit/wire";
import type { Watch } from "./watch.js";

/** Where the end of an expected payload is received straight into (see `Endpoint.recvWith`). */
export interface PayloadTail {
  /** Receives the payload's last `bytes.length` bytes (borrowed; written only by the kernel's copy). */
  readonly bytes: Uint8Array;
  /** Payload bytes that come before the tail (received into the receive buffer as usual). */
  readonly offset: number;
}

/** The fds of a message that begins at buffer offset `at`. */
interface Held {
  at: number;
  fds: OwnedFd[];
}

/** The fds of a message that came without any: shared, frozen, so it costs nothing per message. */
export const NO_FDS: OwnedFd[] = Object.freeze([]) as unknown as OwnedFd[];

/** Buffered frame reader of one endpoint (see the module comment). */
export class FrameReader {
  readonly #sock: number;
  readonly #watch: Watch;
  readonly #maxFds: number;
  readonly #maxPayload: number;
  /** msghdr + iovecs + control + the data area (capacity: one largest frame). */
  readonly rx: IoBlock;
  readonly #cap: number;
  /** Data offsets: the current frame begins at #start, received bytes end at #end. */
  #start = 0;
  #end = 0;
  /** fds received and not yet handed out, by the message they belong to (ascending `at`). */
  readonly #held: Held[] = [];
  readonly #incoming: OwnedFd[] = [];
  /** The last read returned short without fds: the kernel queue was empty then. */
  #drained = false;
  /** Tail bytes of the current frame received straight into the caller's tail buffer. */
  #tailGot = 0;
  /** Request code of the current frame (set when {@link FrameReader.poll} returns true). */
  request = 0;
  /** Header flags of the current frame. */
  flags = 0;
  /** Header size field of the current frame (the whole payload, tail included). */
  size = 0;
  /** Bytes of the current frame in the buffer (header + payload, or + payload up to the tail). */
  inBuffer = 0;
  /** The current frame's payload end went into the tail. */
  tailed = false;

  constructor(sock: number, watch: Watch, maxFds: number, maxPayload: number) {
    this.#sock = sock;
    this.#watch = watch;
    this.#maxFds = maxFds;
    this.#maxPayload = maxPayload;
    this.#cap = HEADER_SIZE + maxPayload;
    this.rx = new IoBlock(maxFds, this.#cap);
  }

  /** Offset of the current frame in `rx.block.bytes`. */
  get frameOffset(): number {
    return this.rx.dataOff + this.#start;
  }

  /** Bytes of the current (incomplete) frame received so far. */
  get partial(): number {
    return this.#end - this.#start + this.#tailGot;
  }

  /** An error a {@link FrameReader.probe} met, thrown by the next {@link FrameReader.poll}. */
  #probeError: unknown;

  /**
   * The waiting reader's probe ({@link Watch.readable}): read as {@link FrameReader.poll} does,
   * without waiting for the reactor's word. Never throws: an error is kept for the next `poll`.
   * @returns true when the reader can go on (the frame is whole, or an error waits for it).
   */
  probe(tail: PayloadTail | undefined): boolean {
    this.#drained = false;
    try {
      return this.poll(tail);
    } catch (err) {
      this.#probeError = err;
      return true;
    }
  }

  /**
   * Make the current frame whole without waiting: from the buffer, or with non-blocking reads.
   * @returns true when it is (its fields are set); false when the caller must wait for readability.
   * @throws TransportError `OVERSIZE`, `EOF`, `FDS_ON_BODY`, `TOO_MANY_FDS`, `CTRUNC`, `BAD_CMSG`,
   *   `SYSCALL`; the endpoint ends on any of them.
   */
  poll(tail: PayloadTail | undefined): boolean {
    if (this.#probeError !== undefined) {
      const err = this.#probeError;
      this.#probeError = undefined;
      throw err;
    }
    for (;;) {
      const v = this.rx.block.view;
      const d = this.rx.dataOff;
      const have = this.#end - this.#start;
      let limit: number;
      let into: PayloadTail | undefined;
      let request = -1;
      if (have >= HEADER_SIZE) {
        request = v.getUint32(d + this.#start, true);
        const size = v.getUint32(d + this.#start + 8, true);
        if (size > this.#maxPayload) {
          throw new TransportError(
            "OVERSIZE",
            "broken",
            `request ${request}: size 0x${size.toString(16)} exceeds max 0x${this.#maxPayload.toString(16)}`,
            undefined,
            { offset: 8, expected: this.#maxPayload, actual: size },
          );
        }
        const whole = HEADER_SIZE + size;
        into = tail !== undefined && size === tail.offset + tail.bytes.length && tail.bytes.length > 0 ? tail : undefined;
        const split = into === undefined ? whole : HEADER_SIZE + into.offset;
        if (into !== undefined && have > split) {
          // Bytes of the tail were read ahead into the buffer: copy them over (once per frame).
          const from = d + this.#start + split;
          const count = Math.min(have, whole) - split;
          into.bytes.set(this.rx.block.bytes.subarray(from, from + count), this.#tailGot);
          this.#tailGot += count;
          if (have < whole) this.#end = this.#start + split;
        }
        if (have >= split && (into === undefined ? have >= whole : split + this.#tailGot === whole)) {
          this.request = request;
          this.flags = v.getUint32(d + this.#start + 4, true);
          this.size = size;
          this.inBuffer = split;
          // A frame read ahead whole (its tail copied out) still spans `whole` bytes in the buffer.
          this.#span = have >= whole ? whole : split;
          this.tailed = into !== undefined;
          return true;
        }
        // A tail receive reads no further than its frame: the bytes after it are no one's to take.
        limit = tail === undefined ? this.#cap : split;
      } else {
        limit = tail === undefined ? this.#cap : HEADER_SIZE;
      }
      if (this.#drained && !this.#watch.hungUp) return false;
      this.#compact();
      const readStart = this.#end;
      const toBuffer = Math.max(0, limit - this.#end);
      const toTail = into === undefined ? 0 : into.bytes.length - this.#tailGot;
      this.#point(toBuffer, into, toTail);
      const n = recvOnce(this.#sock, this.rx, this.#incoming, this.#maxFds, request);
      if (n === AGAIN) {
        this.#drained = true;
        return false;
      }
      if (n === 0) {
        const at = this.partial;
        const what = request < 0 ? "header" : `request ${request}`;
        throw new TransportError("EOF", at === 0 ? "disconnected" : "partial", `${what}: peer closed at offset 0x${at.toString(16)}`, undefined, {
          offset: at,
        });
      }
      const buffered = Math.min(n, toBuffer);
      this.#end += buffered;
      this.#tailGot += n - buffered;
      const gotFds = this.#incoming.length > 0;
      this.#drained = n < toBuffer + toTail && !gotFds;
      if (gotFds) this.#attribute(readStart, request);
    }
  }

  /** Bytes the current frame occupies in the buffer (skipped by {@link FrameReader.consume}). */
  #span = 0;

  /** Point the receive iovecs at the buffer's free room [#end, #end + toBuffer) and then the tail. */
  #point(toBuffer: number, into: PayloadTail | undefined, toTail: number): void {
    const rx = this.rx;
    let iov = 0;
    rx.control(rx.cmsgCap);
    if (toBuffer > 0) rx.setIov(iov++, rx.dataAddr(this.#end), toBuffer);
    // SAFETY: the tail's address is used by the recvmsg that follows, synchronously, while the caller holds it.
    if (into !== undefined && toTail > 0) rx.setIov(iov++, addressOf(into.bytes) + this.#tailGot, toTail);
    rx.iovCount(iov);
  }

  /** Move the current frame's bytes to the front of the buffer (and the offsets of held fds). */
  #compact(): void {
    const s = this.#start;
    if (s === 0) return;
    const d = this.rx.dataOff;
    if (this.#end > s) this.rx.block.bytes.copyWithin(d, d + s, d + this.#end);
    this.#end -= s;
    this.#start = 0;
    for (const h of this.#held) h.at -= s;
  }

  /**
   * Give the fds of the read that ended the buffer at #end (read from `readStart`) to the frame that
   * begins last in the buffer, if that read holds a byte of its header.
   */
  #attribute(readStart: number, request: number): void {
    const fds = this.#incoming.splice(0);
    const v = this.rx.block.view;
    const d = this.rx.dataOff;
    let at = this.#start;
    // Walk the frames in the buffer to the last one that begins in it (a receive with a tail never
    // reads past the current frame).
    while (at + HEADER_SIZE <= this.#end) {
      const size = v.getUint32(d + at + 8, true);
      if (size > this.#maxPayload) break;
      const next = at + HEADER_SIZE + size;
      if (next >= this.#end) break;
      at = next;
    }
    const last = this.#held.at(-1);
    const group = last !== undefined && last.at === at ? last : undefined;
    if (at + HEADER_SIZE <= readStart) {
      for (const f of fds) f.close();
      const name = request < 0 ? "header" : `request ${request}`;
      throw new TransportError("FDS_ON_BODY", "broken", `${name}: fds attached to body at offset 0x${(readStart - at).toString(16)}`, undefined, {
        offset: readStart - at,
      });
    }
    if (group) group.fds.push(...fds);
    else this.#held.push({ at, fds });
    const count = (group ?? this.#held.at(-1))!.fds.length;
    if (count > this.#maxFds) {
      throw new TransportError("TOO_MANY_FDS", "broken", `request ${request}: ${count} fds exceed max ${this.#maxFds}`, undefined, {
        expected: this.#maxFds,
        actual: count,
      });
    }
  }

  /** The current frame's fds (the caller owns them), or {@link NO_FDS}. */
  takeFds(): OwnedFd[] {
    const first = this.#held[0];
    if (first === undefined || first.at !== this.#start) return NO_FDS;
    this.#held.shift();
    return first.fds;
  }

  /** Step past the current frame (after {@link FrameReader.poll} returned true). */
  consume(): void {
    this.#start += this.#span;
    this.#tailGot = 0;
    if (this.#start === this.#end) {
      this.#start = 0;
      this.#end = 0;
    }
  }

  /** Close every fd received and not handed out (the endpoint ends). */
  closeHeld(): void {
    for (const f of this.#incoming.splice(0)) f.close();
    for (const h of this.#held.splice(0)) for (const f of h.fds) f.close();
  }

  /** Free the native buffer. */
  free(): void {
    this.rx.block.free();
  }
}
