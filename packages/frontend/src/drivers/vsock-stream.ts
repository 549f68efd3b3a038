/**
 * One virtio-vsock stream connection (docs/virtio-vsock.md#connections): its state, the credit
 * accounting of both directions (docs/virtio-vsock.md#credit), received data as an async
 * iterator and writes that wait for credit.
 * @module
 */
import { describeErrno } from "@vhostkit/transport";
import { FrontendError } from "../errors.js";
import { VsockOp, VsockShutdown, type VsockHeader } from "./vsock-packet.js";

/** Largest RW payload the driver sends in one packet (the Linux driver's 64 KiB). */
export const VSOCK_MAX_PACKET_PAYLOAD = 64 * 1024;

/** What a stream needs from its driver: send a packet of this connection (addressing and credit filled in). */
export type VsockSendPacket = (op: number, flags: number, payload?: Uint8Array) => Promise<void>;

/** Where a connection is: connecting, connected (data may flow), or closed. */
export type VsockStreamState = "connecting" | "connected" | "closed";

/** The addresses of a connection. CIDs are u64, ports u32. */
export interface VsockAddress {
  readonly localCid: bigint;
  readonly localPort: number;
  readonly peerCid: bigint;
  readonly peerPort: number;
}

/**
 * A vsock stream. Received data comes from the async iterator (each chunk counts as consumed,
 * and so as credit returned to the peer, once the next one is asked for); {@link VsockStream.write}
 * sends RW packets within the peer's credit and waits for CREDIT_UPDATEs when it runs out;
 * {@link VsockStream.end} is a half close (SHUTDOWN SEND), {@link VsockStream.close} a full one.
 * Created by `VsockDriver.connect` and `VsockDriver.listen`.
 */
export class VsockStream implements AsyncIterable<Uint8Array> {
  /** The connection's addresses. */
  readonly address: VsockAddress;
  /** Our receive buffer for this connection, advertised as `buf_alloc`, bytes. */
  readonly bufAlloc: number;
  readonly #send: VsockSendPacket;
  #state: VsockStreamState;
  /** Bytes our application consumed (`fwd_cnt`, u32 wrapping) and the value last told to the peer. */
  #fwdCnt = 0;
  #fwdCntSent = 0;
  /** Bytes we sent (u32 wrapping) and the peer's last advertised buffer and consumption. */
  #txCnt = 0;
  #peerBufAlloc = 0;
  #peerFwdCnt = 0;
  #creditWaiters: (() => void)[] = [];
  /** Received payloads not yet consumed, and their total. */
  readonly #chunks: Uint8Array[] = [];
  #buffered = 0;
  #readWaiter: (() => void) | undefined;
  /** The peer will send no more (SHUTDOWN SEND, RST) / receive no more (SHUTDOWN RCV, RST). */
  #peerSendDone = false;
  #peerRecvDone = false;
  /** How reading ends once the buffered data is consumed: at end of stream, or with an error. */
  #rxEnd: "eof" | FrontendError | undefined;
  #sendDone = false;
  #error: FrontendError | undefined;
  readonly #established: Promise<void>;
  #settleEstablished!: (err?: FrontendError) => void;
  readonly #closed: Promise<void>;
  #resolveClosed!: () => void;

  /** @internal Use `VsockDriver.connect` or `VsockDriver.listen`. */
  constructor(address: VsockAddress, bufAlloc: number, send: VsockSendPacket, state: VsockStreamState) {
    this.address = address;
    this.bufAlloc = bufAlloc;
    this.#send = send;
    this.#state = state;
    this.#established = new Promise<void>((resolve, reject) => {
      this.#settleEstablished = (err) => (err === undefined ? resolve() : reject(err));
    });
    this.#established.catch(() => undefined);
    if (state === "connected") this.#settleEstablished();
    this.#closed = new Promise((r) => (this.#resolveClosed = r));
  }

  /** The connection's state. */
  get state(): VsockStreamState {
    return this.#state;
  }

  /** Resolves once connected; rejects when the peer refused (RST) or the connection failed first. */
  get established(): Promise<void> {
    return this.#established;
  }

  /** Resolves once the connection is closed (RST either way, or both sides shut down). */
  get closed(): Promise<void> {
    return this.#closed;
  }

  /** The `buf_alloc` and `fwd_cnt` fields this side puts in every packet. @internal */
  credit(): { readonly bufAlloc: number; readonly fwdCnt: number } {
    this.#fwdCntSent = this.#fwdCnt;
    return { bufAlloc: this.bufAlloc, fwdCnt: this.#fwdCnt };
  }

  /** Bytes the peer can take now: its buffer minus what is in flight (0 when it claims less). */
  get peerCredit(): number {
    const inFlight = (this.#txCnt - this.#peerFwdCnt) >>> 0;
    return Math.max(0, this.#peerBufAlloc - inFlight);
  }

  /**
   * A packet the driver received for this connection. Every packet carries the peer's credit.
   * @internal
   */
  deliver(h: VsockHeader, payload: Uint8Array): void {
    if (this.#state === "closed") return;
    this.#peerBufAlloc = h.bufAlloc;
    this.#peerFwdCnt = h.fwdCnt;
    this.#wakeWriters();
    switch (h.op) {
      case VsockOp.RESPONSE:
        if (this.#state === "connecting") {
          this.#state = "connected";
          this.#settleEstablished();
        }
        return;
      case VsockOp.RW:
        if (this.#state !== "connected" || this.#peerSendDone) return;
        if (this.#buffered + payload.byteLength > this.bufAlloc) {
          this.#fail(
            new FrontendError(
              "PROTOCOL",
              `vsock port ${this.address.localPort}: the peer sent ${this.#buffered + payload.byteLength} bytes against a credit of ${this.bufAlloc}`,
              { request: "VSOCK_RW", expected: this.bufAlloc, actual: this.#buffered + payload.byteLength },
            ),
            true,
          );
          return;
        }
        if (payload.byteLength > 0) {
          this.#chunks.push(payload);
          this.#buffered += payload.byteLength;
          this.#wakeReader();
        }
        return;
      case VsockOp.CREDIT_REQUEST:
        void this.#send(VsockOp.CREDIT_UPDATE, 0).catch(() => undefined);
        return;
      case VsockOp.CREDIT_UPDATE:
        return;
      case VsockOp.SHUTDOWN:
        if ((h.flags & VsockShutdown.SEND) !== 0) {
          this.#peerSendDone = true;
          this.#rxEnd ??= "eof";
        }
        if ((h.flags & VsockShutdown.RCV) !== 0) this.#peerRecvDone = true;
        this.#wakeReader();
        this.#wakeWriters();
        this.#maybeFinish();
        return;
      case VsockOp.RST: {
        const refused = this.#state === "connecting";
        const err = refused
          ? new FrontendError(
              "REFUSED",
              `vsock connect to port ${this.address.peerPort} of CID ${this.address.peerCid}: ${describeErrno(111)}: the device answered RST`,
              { request: "VSOCK_REQUEST", actual: "ECONNREFUSED" },
            )
          : new FrontendError("DISCONNECTED", `vsock port ${this.address.localPort}: ${describeErrno(104)}: the peer sent RST`, {
              request: "VSOCK_RST",
              actual: "ECONNRESET",
            });
        this.#peerSendDone = true;
        this.#peerRecvDone = true;
        this.#finish(err, !refused);
        return;
      }
      default:
        // REQUEST on a live connection or an unknown op: the connection cannot continue.
        this.#fail(
          new FrontendError("PROTOCOL", `vsock port ${this.address.localPort}: unexpected op ${h.op} from the peer`, { request: "VSOCK_RX", actual: h.op }),
          true,
        );
    }
  }

  /**
   * Sends `data` in RW packets within the peer's credit, waiting for CREDIT_UPDATEs when it is
   * used up (a CREDIT_REQUEST asks for one).
   * @throws FrontendError `DISCONNECTED` (reset, or the peer will receive no more), `BAD_ARGUMENT` after {@link VsockStream.end}.
   */
  async write(data: Uint8Array): Promise<void> {
    await this.#established;
    if (this.#sendDone) throw new FrontendError("BAD_ARGUMENT", `vsock port ${this.address.localPort}: write after end`);
    let off = 0;
    while (off < data.byteLength) {
      this.#throwIfBroken();
      const credit = this.peerCredit;
      if (credit === 0) {
        const wait = new Promise<void>((r) => this.#creditWaiters.push(r));
        await this.#send(VsockOp.CREDIT_REQUEST, 0);
        await wait;
        continue;
      }
      const n = Math.min(credit, VSOCK_MAX_PACKET_PAYLOAD, data.byteLength - off);
      this.#txCnt = (this.#txCnt + n) >>> 0;
      await this.#send(VsockOp.RW, 0, data.subarray(off, off + n));
      off += n;
    }
  }

  #throwIfBroken(): void {
    if (this.#error !== undefined) throw this.#error;
    if (this.#peerRecvDone || this.#state === "closed")
      throw new FrontendError("DISCONNECTED", `vsock port ${this.address.localPort}: ${describeErrno(32)}: the peer receives no more`, {
        request: "VSOCK_RW",
        actual: "EPIPE",
      });
  }

  /** Half close: SHUTDOWN with SEND (no more data from this side). Idempotent. */
  async end(): Promise<void> {
    if (this.#sendDone || this.#state !== "connected") return;
    this.#sendDone = true;
    await this.#send(VsockOp.SHUTDOWN, VsockShutdown.SEND);
    this.#maybeFinish();
  }

  /**
   * Full close: SHUTDOWN with RCV and SEND, then wait (at most `timeoutMs`) for the peer's RST or
   * its own full shutdown; RST when it does not come. Idempotent.
   */
  async close(timeoutMs = 2000): Promise<void> {
    if (this.#state === "closed") return;
    if (this.#state === "connected") {
      this.#sendDone = true;
      await this.#send(VsockOp.SHUTDOWN, VsockShutdown.RCV | VsockShutdown.SEND).catch(() => undefined);
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([this.#closed, new Promise<void>((r) => (timer = setTimeout(r, timeoutMs)))]);
      clearTimeout(timer);
    }
    if ((this.#state as VsockStreamState) !== "closed") this.#fail(new FrontendError("CLOSED", `vsock port ${this.address.localPort} closed`), true);
  }

  /** Both sides shut down and everything received consumed: reset and close, as Linux does. */
  #maybeFinish(): void {
    if (this.#state === "connected" && this.#peerSendDone && this.#peerRecvDone && this.#buffered === 0) this.#finish(undefined, true);
  }

  /** Fails the connection with `err` (sending RST when `reset`). @internal */
  #fail(err: FrontendError, reset: boolean): void {
    this.#finish(err, reset);
  }

  /** Fails or resets the connection from outside (the device failed, the driver closed). @internal */
  abort(err: FrontendError): void {
    this.#finish(err, false);
  }

  #finish(err: FrontendError | undefined, reset: boolean): void {
    if (this.#state === "closed") return;
    const wasConnecting = this.#state === "connecting";
    this.#state = "closed";
    if (err !== undefined && this.#error === undefined) this.#error = err;
    // A reset after the peer's SHUTDOWN SEND, or our own close, ends reading normally.
    this.#rxEnd ??= err === undefined || err.code === "CLOSED" ? "eof" : err;
    if (reset) void this.#send(VsockOp.RST, 0).catch(() => undefined);
    if (wasConnecting) this.#settleEstablished(err ?? new FrontendError("CLOSED", `vsock port ${this.address.localPort} closed before it connected`));
    this.#wakeReader();
    this.#wakeWriters();
    this.#resolveClosed();
  }

  #wakeWriters(): void {
    const w = this.#creditWaiters;
    this.#creditWaiters = [];
    for (const f of w) f();
  }

  #wakeReader(): void {
    const r = this.#readWaiter;
    this.#readWaiter = undefined;
    r?.();
  }

  /** Counts `n` bytes as consumed; tells the peer once a quarter of the buffer was freed since it last heard. */
  #consumed(n: number): void {
    this.#buffered -= n;
    this.#fwdCnt = (this.#fwdCnt + n) >>> 0;
    if (this.#state === "connected" && !this.#peerSendDone && (this.#fwdCnt - this.#fwdCntSent) >>> 0 >= this.bufAlloc / 4) {
      void this.#send(VsockOp.CREDIT_UPDATE, 0).catch(() => undefined);
    }
    this.#maybeFinish();
  }

  /**
   * Received data, chunk by chunk, until the peer shuts its sending side (SHUTDOWN SEND) or the
   * connection closes; a reset without that shutdown throws `DISCONNECTED` (ECONNRESET).
   */
  async *[Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    await this.#established;
    for (;;) {
      const chunk = this.#chunks.shift();
      if (chunk !== undefined) {
        try {
          yield chunk;
        } finally {
          this.#consumed(chunk.byteLength);
        }
        continue;
      }
      const end = this.#rxEnd;
      if (end === "eof") return;
      if (end !== undefined) throw end;
      await new Promise<void>((r) => (this.#readWaiter = r));
    }
  }
}
