/**
 * What a {@link Dispatcher} is configured with, and what it reports.
 * @module
 */
import type { Reactor } from "@vhostkit/transport";
import { type Dialect, VHOSTKIT_MEM_RW_DEFAULT_BIT, type VhostUserError, vhostkitMemRwBufferFeature, vhostkitMemRwFeature } from "@vhostkit/wire";

/** Something the dispatcher reports for logs and tests (it never logs by itself). */
export type BackendEvent =
  /** A request was received (before it is handled). */
  | { readonly kind: "request"; readonly name: string; readonly flags: number; readonly size: number; readonly fds: number }
  /** A request was refused with a failure reply (the connection stays up). */
  | { readonly kind: "rejected"; readonly name: string; readonly error: VhostUserError }
  /** The front-end was dropped because of `error` (protocol violation without a way to answer it). */
  | { readonly kind: "dropped"; readonly error: VhostUserError }
  /** The front-end disconnected. */
  | { readonly kind: "disconnected" }
  /** A guest error broke queue `index`; its err fd was signalled. */
  | { readonly kind: "queue-broken"; readonly index: number; readonly error: unknown }
  /** The device's `start` hook failed. */
  | { readonly kind: "device-error"; readonly error: unknown }
  /**
   * Ring `index` started with inflight tracking (INFLIGHT_SHMFD, docs/protocol.md#inflight-tracking-and-reconnect);
   * `resubmitted` chains an earlier back-end left in flight go to the device first.
   */
  | { readonly kind: "inflight"; readonly index: number; readonly resubmitted: number }
  /** The device started (`true`) or stopped (`false`) running. */
  | { readonly kind: "running"; readonly running: boolean }
  /**
   * A device state transfer ended (docs/protocol.md#device-state-transfer): `bytes` moved through
   * the pipe; `error` when it failed (CHECK_DEVICE_STATE then answers non-zero).
   */
  | { readonly kind: "device-state"; readonly direction: "save" | "load"; readonly bytes: number; readonly error?: VhostUserError };

/** Options of a {@link Dispatcher} (and of `serve`). */
export interface DispatcherOptions {
  /** SHMEM dialect of the connection (default upstream). */
  readonly dialect?: Dialect;
  /** GET_MAX_MEM_SLOTS answer and memory-table cap (default 509). */
  readonly maxMemSlots?: number;
  /**
   * Refuse SET_MEM_TABLE / ADD_MEM_REG regions backed by a file without `F_SEAL_SHRINK` (default
   * `false`): a front-end that truncates guest memory under the mapping would make the next access
   * a SIGBUS that kills this process. QEMU's `memory-backend-memfd` (default `seal=on`) and
   * vhostkit's front-end seal guest RAM; QEMU's `memory-backend-file` cannot, hence the default.
   */
  readonly requireSealedMemory?: boolean;
  /**
   * Offer vhostkit's MEM_READ/MEM_WRITE (docs/shmem.md#vhostkit-memory-access-extension): `true` for bit 63, or `{ bit }`;
   * its revision 2, the shared data buffer, is offered with it at the bit just below (docs/shmem.md#shared-data-buffer-revision-2).
   */
  readonly memRw?: boolean | { readonly bit: number };
  /**
   * Offer dirty page logging for live migration (VHOST_F_LOG_ALL and LOG_SHMFD,
   * docs/protocol.md#dirty-page-logging; default `true`). `false`: QEMU then refuses to migrate the VM.
   */
  readonly dirtyLog?: boolean;
  /** Largest device state a load reads, bytes (default 64 MiB); more is `STATE_INVALID`. */
  readonly maxDeviceStateBytes?: number;
  /**
   * Answer SET_DEVICE_STATE_FD with a pipe of the back-end's own, whose other end goes back in the
   * reply (bit 8 clear), instead of using the front-end's fd (default `false`).
   */
  readonly ownStatePipe?: boolean;
  /** Per-request timeout on the back-end channel, milliseconds (default 5000). */
  readonly timeoutMs?: number;
  /** Diagnostics sink. */
  readonly onEvent?: (event: BackendEvent) => void;
  /** Reactor for the eventfds and sockets (default the shared one). */
  readonly reactor?: Reactor;
}

/**
 * The protocol feature masks the `memRw` option offers: the MEM_RW gate and its shared-buffer bit
 * (both 0n when off; the buffer bit 0n for a gate below bit 33).
 * @internal
 */
export function memRwMasks(memRw: DispatcherOptions["memRw"]): { readonly gate: bigint; readonly buffer: bigint } {
  if (memRw === undefined || memRw === false) return { gate: 0n, buffer: 0n };
  const bit = memRw === true ? VHOSTKIT_MEM_RW_DEFAULT_BIT : memRw.bit;
  return { gate: vhostkitMemRwFeature(bit), buffer: vhostkitMemRwBufferFeature(bit) };
}
