/**
 * virtio-vsock driver (docs/virtio-vsock.md#device; device id 19): stream connections over the
 * rx, tx and event queues.
 * @module
 */
import { describeErrno } from "@vhostkit/transport";
import { FrontendError, isFrontendError } from "../errors.js";
import type { Device } from "../device.js";
import type { DriverQueue } from "../driver-queue.js";
import {
  decodeVsockConfig,
  decodeVsockPacket,
  encodeVsockHeader,
  VSOCK_HEADER_SIZE,
  VSOCK_HOST_CID,
  VsockOp,
  VsockType,
  type VsockHeader,
} from "./vsock-packet.js";
import { VSOCK_MAX_PACKET_PAYLOAD, VsockStream } from "./vsock-stream.js";

/** Receive buffers kept posted on the rx queue. */
const RX_BUFFERS = 16;
/** Event buffers kept posted on the event queue (`virtio_vsock_event`, 4 bytes each). */
const EVENT_BUFFERS = 4;
/** The first local port handed out to outgoing connections (below are well-known ports). */
const FIRST_EPHEMERAL_PORT = 49152;

/** Options of {@link VsockDriver.attach}. */
export interface VsockDriverOptions {
  /** This guest's CID (u64 ≥ 3). Default: the device's config space; required when it has none. */
  readonly guestCid?: bigint;
  /** Receive buffer per connection advertised as `buf_alloc`, bytes (default 256 KiB). */
  readonly bufAlloc?: number;
  /** Queue size of the three queues (default 128). */
  readonly queueSize?: number;
}

function key(localPort: number, peerCid: bigint, peerPort: number): string {
  return `${localPort}:${peerCid}:${peerPort}`;
}

/**
 * A virtio-vsock driver on a {@link Device}: starts queues 0 (rx), 1 (tx) and 2 (event), keeps
 * receive and event buffers posted, and routes each received packet to its connection. Packets
 * for no connection get RST (except RST itself); a REQUEST to a port nobody listens on too.
 */
export class VsockDriver {
  /** The device. */
  readonly device: Device;
  /** This guest's CID, the source of every packet sent. */
  readonly guestCid: bigint;
  readonly #rx: DriverQueue;
  readonly #tx: DriverQueue;
  readonly #event: DriverQueue;
  readonly #bufAlloc: number;
  readonly #streams = new Map<string, VsockStream>();
  readonly #listeners = new Map<number, (s: VsockStream) => void>();
  #nextPort = FIRST_EPHEMERAL_PORT;
  #closed = false;
  #failure: FrontendError | undefined;
  /** Resolves when the device reported TRANSPORT_RESET or a queue failed. */
  readonly failed: Promise<FrontendError>;
  #resolveFailed!: (e: FrontendError) => void;
  /** Rejects with the failure (handled: only raced against). */
  readonly #failedRejection: Promise<never>;

  private constructor(device: Device, cid: bigint, queues: readonly DriverQueue[], bufAlloc: number) {
    this.device = device;
    this.guestCid = cid;
    [this.#rx, this.#tx, this.#event] = queues as [DriverQueue, DriverQueue, DriverQueue];
    this.#bufAlloc = bufAlloc;
    this.failed = new Promise((r) => (this.#resolveFailed = r));
    this.#failedRejection = this.failed.then((e) => Promise.reject(e));
    this.#failedRejection.catch(() => undefined);
    for (let i = 0; i < RX_BUFFERS; i++) this.#postRx();
    for (let i = 0; i < EVENT_BUFFERS; i++) this.#postEvent();
  }

  /**
   * Starts the rx, tx and event queues and posts receive buffers.
   * @throws FrontendError `BAD_ARGUMENT` (no CID known, or a CID below 3), `NEGOTIATION` when
   *   `guestCid` differs from the device's config, and the codes of {@link Device.start}.
   */
  static async attach(device: Device, options: VsockDriverOptions = {}): Promise<VsockDriver> {
    const configCid = device.info.config === undefined ? undefined : decodeVsockConfig(device.info.config);
    const cid = options.guestCid ?? configCid;
    if (cid === undefined)
      throw new FrontendError("BAD_ARGUMENT", "vsock: the device has no config space to read the guest CID from: give it", { request: "GET_CONFIG" });
    if (cid < 3n || cid >= 0xffff_ffffn)
      throw new FrontendError("BAD_ARGUMENT", `vsock: CID ${cid} is reserved (guests have 3 to 0xfffffffe)`, { actual: cid });
    if (configCid !== undefined && configCid !== cid)
      throw new FrontendError("NEGOTIATION", `vsock: the device's guest CID is ${configCid}, not ${cid}`, {
        request: "GET_CONFIG",
        expected: cid,
        actual: configCid,
      });
    const bufAlloc = options.bufAlloc ?? 256 * 1024;
    if (!Number.isInteger(bufAlloc) || bufAlloc < VSOCK_MAX_PACKET_PAYLOAD || bufAlloc > 0x7fff_ffff)
      throw new FrontendError("BAD_ARGUMENT", `vsock: buffer of ${bufAlloc} bytes (64 KiB to 2 GiB)`, { actual: bufAlloc });
    const queues = await device.start({ queues: [0, 1, 2], queueSize: options.queueSize ?? 128 });
    return new VsockDriver(device, cid, queues, bufAlloc);
  }

  /** Posts one receive buffer (header + the largest payload) with no deadline; re-posts itself. */
  #postRx(): void {
    if (this.#closed || this.#failure !== undefined) return;
    // Header and payload in separate buffers, as the Linux driver posted them before 6.2: every
    // device accepts that layout (docs/virtio-vsock.md#queues).
    this.#rx.transfer([], [VSOCK_HEADER_SIZE, VSOCK_MAX_PACKET_PAYLOAD], Infinity).then(
      (r) => {
        this.#postRx();
        try {
          const { header, payload } = decodeVsockPacket(r.buffers[0] as Uint8Array, r.buffers[1] as Uint8Array, r.len);
          this.#dispatch(header, payload);
        } catch (err) {
          this.#fail(isFrontendError(err) ? err : new FrontendError("PROTOCOL", String(err)));
        }
      },
      (err: unknown) => this.#fail(isFrontendError(err) ? err : new FrontendError("PROTOCOL", String(err))),
    );
  }

  #postEvent(): void {
    if (this.#closed || this.#failure !== undefined) return;
    this.#event.transfer([], [4], Infinity).then(
      (r) => {
        const id = r.len >= 4 ? new DataView((r.buffers[0] as Uint8Array).buffer).getUint32(0, true) : -1;
        // TRANSPORT_RESET (id 0): every connection is gone (docs/virtio-vsock.md#event-queue).
        this.#resetAll(new FrontendError("DISCONNECTED", `vsock: the device reset the transport (event ${id})`, { request: "VSOCK_EVENT", actual: id }));
        this.#postEvent();
      },
      (err: unknown) => this.#fail(isFrontendError(err) ? err : new FrontendError("PROTOCOL", String(err))),
    );
  }

  #dispatch(h: VsockHeader, payload: Uint8Array): void {
    if (h.dstCid !== this.guestCid || h.type !== VsockType.STREAM) {
      if (h.op !== VsockOp.RST) void this.#reply(h, VsockOp.RST);
      return;
    }
    const s = this.#streams.get(key(h.dstPort, h.srcCid, h.srcPort));
    if (s !== undefined) {
      s.deliver(h, payload);
      if (s.state === "closed") this.#streams.delete(key(h.dstPort, h.srcCid, h.srcPort));
      return;
    }
    const accept = h.op === VsockOp.REQUEST ? this.#listeners.get(h.dstPort) : undefined;
    if (accept === undefined) {
      if (h.op !== VsockOp.RST) void this.#reply(h, VsockOp.RST);
      return;
    }
    this.#listeners.delete(h.dstPort);
    const stream = this.#open(h.dstPort, h.srcCid, h.srcPort, "connected");
    stream.deliver({ ...h, op: VsockOp.CREDIT_UPDATE }, payload); // take the peer's credit from its REQUEST
    void this.#sendFor(stream, VsockOp.RESPONSE, 0).catch((e: unknown) => stream.abort(isFrontendError(e) ? e : new FrontendError("DISCONNECTED", String(e))));
    accept(stream);
  }

  /** An answer to a packet that belongs to no connection (addresses swapped, no credit). */
  #reply(h: VsockHeader, op: number): Promise<void> {
    const pkt = encodeVsockHeader({
      srcCid: this.guestCid,
      dstCid: h.srcCid,
      srcPort: h.dstPort,
      dstPort: h.srcPort,
      type: VsockType.STREAM,
      op,
      flags: 0,
      bufAlloc: 0,
      fwdCnt: 0,
    });
    return this.#tx.transfer([pkt], []).then(
      () => undefined,
      () => undefined,
    );
  }

  #open(localPort: number, peerCid: bigint, peerPort: number, state: "connecting" | "connected"): VsockStream {
    const stream: VsockStream = new VsockStream(
      { localCid: this.guestCid, localPort, peerCid, peerPort },
      this.#bufAlloc,
      (op, flags, payload) => this.#sendFor(stream, op, flags, payload),
      state,
    );
    this.#streams.set(key(localPort, peerCid, peerPort), stream);
    void stream.closed.then(() => this.#streams.delete(key(localPort, peerCid, peerPort)));
    return stream;
  }

  /** Sends one packet of `stream` on the tx queue (credit fields from the stream). */
  async #sendFor(stream: VsockStream, op: number, flags: number, payload?: Uint8Array): Promise<void> {
    if (this.#failure !== undefined) throw this.#failure;
    const a = stream.address;
    const header = encodeVsockHeader(
      { srcCid: a.localCid, dstCid: a.peerCid, srcPort: a.localPort, dstPort: a.peerPort, type: VsockType.STREAM, op, flags, ...stream.credit() },
      payload?.byteLength ?? 0,
    );
    await this.#tx.transfer(payload === undefined || payload.byteLength === 0 ? [header] : [header, payload], []);
  }

  /**
   * Connects to `port` of `cid` (default the host, CID 2): REQUEST, then RESPONSE or RST.
   * @throws FrontendError `REFUSED` (the device answered RST: nobody listens there —
   *   `connection refused (ECONNREFUSED)`), `TIMEOUT` after `timeoutMs`, `DISCONNECTED`.
   */
  async connect(port: number, options: { readonly cid?: bigint; readonly timeoutMs?: number } = {}): Promise<VsockStream> {
    if (!Number.isInteger(port) || port < 0 || port > 0xffff_ffff)
      throw new FrontendError("BAD_ARGUMENT", `vsock: port ${port} is not a u32`, { actual: port });
    const cid = options.cid ?? VSOCK_HOST_CID;
    let local = this.#nextPort;
    while (this.#streams.has(key(local, cid, port)) || this.#listeners.has(local)) local = local >= 0xffff_fffe ? FIRST_EPHEMERAL_PORT : local + 1;
    this.#nextPort = local + 1;
    const stream = this.#open(local, cid, port, "connecting");
    await this.#sendFor(stream, VsockOp.REQUEST, 0);
    const timeoutMs = options.timeoutMs ?? 5000;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<never>((_, reject) => {
      // A device that sends no RST for a port nobody listens on (vhost-device-vsock 0.3,
      // docs/virtio-vsock.md#observed-devices) leaves only this.
      timer = setTimeout(
        () =>
          reject(
            new FrontendError(
              "TIMEOUT",
              `vsock connect to port ${port} of CID ${cid}: ${describeErrno(110)}: no RESPONSE or RST within ${timeoutMs} ms — nobody accepted the connection`,
              { request: "VSOCK_REQUEST", actual: "ETIMEDOUT" },
            ),
          ),
        timeoutMs,
      );
    });
    try {
      await Promise.race([stream.established, late, this.#failedRejection]);
    } catch (err) {
      stream.abort(isFrontendError(err) ? err : new FrontendError("DISCONNECTED", String(err)));
      throw err;
    } finally {
      clearTimeout(timer);
    }
    return stream;
  }

  /**
   * Waits for one connection to `port` (a REQUEST from any peer) and accepts it (RESPONSE).
   * @throws FrontendError `BAD_ARGUMENT` when `port` already has a listener, `TIMEOUT` after
   *   `timeoutMs` (default: wait forever), `DISCONNECTED` when the device goes away.
   */
  async listen(port: number, options: { readonly timeoutMs?: number } = {}): Promise<VsockStream> {
    if (this.#listeners.has(port)) throw new FrontendError("BAD_ARGUMENT", `vsock: port ${port} already has a listener`, { actual: port });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const accepted = new Promise<VsockStream>((resolve) => this.#listeners.set(port, resolve));
    const late = new Promise<never>((_, reject) => {
      if (options.timeoutMs !== undefined)
        timer = setTimeout(
          () =>
            reject(new FrontendError("TIMEOUT", `vsock listen on port ${port}: no connection within ${options.timeoutMs} ms`, { request: "VSOCK_REQUEST" })),
          options.timeoutMs,
        );
    });
    try {
      return await Promise.race([accepted, late, this.#failedRejection]);
    } finally {
      clearTimeout(timer);
      this.#listeners.delete(port);
    }
  }

  #resetAll(err: FrontendError): void {
    for (const s of this.#streams.values()) s.abort(err);
    this.#streams.clear();
  }

  #fail(err: FrontendError): void {
    if (this.#failure !== undefined || this.#closed) return;
    this.#failure = err;
    this.#resetAll(err);
    this.#resolveFailed(err);
  }

  /** Closes every connection (SHUTDOWN, then RST when the peer does not answer). The device stays open. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    await Promise.all([...this.#streams.values()].map((s) => s.close()));
    this.#closed = true;
  }
}
