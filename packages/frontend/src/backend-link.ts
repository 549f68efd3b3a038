/**
 * What a device holds of one back-end process: the connection, the memory-table mirror of that
 * back-end, the device's place in the guest's shared memory, and the back-end channel's handler.
 * A device has one link at a time; a reconnect (docs/protocol.md#inflight-tracking-and-reconnect)
 * lets go of the old link and makes a new one.
 * @module
 */
import type { GuestAddressSpace, GuestRam } from "@vhostkit/regions";
import { ProtocolFeature } from "@vhostkit/wire";
import { BackendRequestHandler } from "./backend-request-handler.js";
import type { DeviceOptions } from "./device-options.js";
import { FrontendError } from "./errors.js";
import type { Frontend } from "./frontend.js";
import type { DeviceSharedMemoryPort, GuestSharedMemory } from "./guest-shared-memory.js";
import { MemoryTableMirror } from "./memory-table-mirror.js";
import { hasFeatures, type Negotiated } from "./negotiation.js";

/** What a link needs of the guest (a device's host provides it). @internal */
export interface LinkHost {
  /** Guest RAM: the first entries of every memory table. */
  readonly ram: GuestRam;
  /** What MEM_READ/MEM_WRITE reach. */
  readonly space: GuestAddressSpace;
  /** Every device's shared memory and back-end memory table. */
  readonly sharedMemory: GuestSharedMemory;
}

/** What a link reports to its device. @internal */
export interface BackendLinkHooks {
  /** The back-end is lost or its table can no longer be trusted. */
  readonly onFatal: (error: FrontendError) => void;
  /** BACKEND_CONFIG_CHANGE_MSG arrived. */
  readonly onConfigChange: () => void;
}

/**
 * One back-end connection of a device and what hangs on it (see the module notes). Made from a
 * negotiated connection: the mirror joins the guest's shared memory, the back-end channel starts
 * being served.
 * @internal
 */
export class BackendLink {
  /** The connection (owned). */
  readonly fe: Frontend;
  /** This back-end's memory table as sent. */
  readonly mirror: MemoryTableMirror;
  /** The device's port into the guest's shared memory, for this back-end. */
  readonly port: DeviceSharedMemoryPort;
  /** Serves the back-end channel, when BACKEND_REQ was negotiated. */
  readonly handler: BackendRequestHandler | undefined;

  /** @param fe - ownership taken; `negotiated`'s channel too. */
  constructor(host: LinkHost, options: DeviceOptions, fe: Frontend, negotiated: Negotiated, hooks: BackendLinkHooks) {
    const { info, channel, regions, memRw, memRwBuffer } = negotiated;
    this.fe = fe;
    this.mirror = new MemoryTableMirror({
      connection: fe,
      ram: host.ram,
      slotted: hasFeatures(info.ackedProtocolFeatures, ProtocolFeature.CONFIGURE_MEM_SLOTS),
      maxMemSlots: info.maxMemSlots,
      policy: options.sharedMemoryPolicy ?? "auto",
      propagating: host.sharedMemory.propagating,
      memRw,
      onFatal: hooks.onFatal,
    });
    this.port = host.sharedMemory.join(regions, this.mirror, memRw ? host.space : undefined);
    // A back-end without a channel (or with a request in flight on neither socket) is seen dying here.
    void fe.hangup().then(() => hooks.onFatal(new FrontendError("DISCONNECTED", "the back-end hung up the socket", { request: "MAIN_SOCKET" })));
    if (channel !== undefined) {
      this.handler = new BackendRequestHandler(channel, {
        dialect: info.dialect,
        replyAck: hasFeatures(info.ackedProtocolFeatures, ProtocolFeature.REPLY_ACK),
        backendSendFd: hasFeatures(info.ackedProtocolFeatures, ProtocolFeature.BACKEND_SEND_FD),
        sharedMemory: this.port,
        onConfigChange: hooks.onConfigChange,
        ...(options.onBackendRequest === undefined ? {} : { onOutcome: options.onBackendRequest }),
        ...(options.trace === undefined ? {} : { trace: options.trace }),
        onClose: hooks.onFatal,
        memRwBuffer,
      });
      void this.handler.start();
    }
  }

  /**
   * Lets go of a lost back-end: its mirror stops (the private fd dups close), the device's mappings
   * are dropped — and so leave every other back-end's table — the port leaves the guest's shared
   * memory, and the channel and the socket close. Idempotent.
   */
  detach(): void {
    this.mirror.release();
    this.port.dropMappings();
    this.port.leave();
    this.handler?.close();
    this.fe.close();
  }
}
