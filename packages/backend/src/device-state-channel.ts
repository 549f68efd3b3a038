/**
 * One connection's device state channel (docs/protocol.md#device-state-transfer): SET_DEVICE_STATE_FD
 * checks the request and starts the transfer through the pipe in the background (the front-end
 * reads or writes the other end only after the reply), CHECK_DEVICE_STATE waits for it and reports
 * how it went. The pipe end is closed exactly once, when the transfer ends or is aborted.
 * @module
 */
import { createPipe, isTransportError, OwnedFd, PipeEnd, type Reactor } from "@vhostkit/transport";
import { DeviceStateDirection, isVhostUserError, type DeviceStateParams, type DeviceStateReply, type VhostUserError } from "@vhostkit/wire";
import type { DeviceBackend } from "./device-backend.js";
import type { BackendEvent } from "./dispatcher-options.js";
import { PipeStateReader, PipeStateWriter } from "./device-state.js";
import { BackendError, protocolError } from "./errors.js";
import { FdReply } from "./reply-policy.js";

/** Default cap on the bytes a load reads (64 MiB): a front-end cannot make the back-end buffer more. */
export const DEFAULT_MAX_DEVICE_STATE_BYTES = 64 * 1024 * 1024;

const REQUEST = "SET_DEVICE_STATE_FD";

/** How a transfer ended. */
interface Outcome {
  readonly bytes: number;
  readonly error: VhostUserError | undefined;
}

/** What the channel needs of the connection's rings. @internal */
export interface StoppableRings {
  /** Number of vrings. */
  readonly count: number;
  /** True while ring `index` is started. */
  isStarted(index: number): boolean;
  /** Resolves once no queue handler runs. */
  quiesce(): Promise<void>;
}

/** Options of a {@link DeviceStateChannel}. @internal */
export interface DeviceStateChannelOptions {
  /** Cap on the bytes a load reads. */
  readonly maxBytes: number;
  /** Answer SET_DEVICE_STATE_FD with a pipe of the back-end's own (reply bit 8 clear) instead of using the front-end's. */
  readonly ownPipe: boolean;
  /** Readiness source for the pipe (default the shared reactor). */
  readonly reactor: Reactor | undefined;
}

/**
 * The device state transfers of one connection, at most one at a time.
 * @internal
 */
export class DeviceStateChannel {
  readonly #device: DeviceBackend;
  readonly #options: DeviceStateChannelOptions;
  readonly #report: (event: BackendEvent) => void;
  /** The transfer SET_DEVICE_STATE_FD started and CHECK_DEVICE_STATE has not consumed yet. */
  #transfer: { readonly pipe: PipeEnd; readonly done: Promise<Outcome>; settled: boolean } | undefined;

  constructor(device: DeviceBackend, options: DeviceStateChannelOptions, report: (event: BackendEvent) => void) {
    this.#device = device;
    this.#options = options;
    this.#report = report;
  }

  /** True when the device has both state hooks (then DEVICE_STATE is offered). */
  static supported(device: DeviceBackend): boolean {
    return device.saveState !== undefined && device.loadState !== undefined;
  }

  /**
   * SET_DEVICE_STATE_FD: checks direction, phase, fd and that no ring is started, waits until no
   * queue handler runs (none may touch the state being saved or replaced), then starts the
   * transfer. The received fd is transferred out of `fd` only once every check passed (the caller
   * closes it otherwise; with `ownPipe` it stays there and is closed unused).
   * @param rings - the connection's rings.
   * @returns the reply: success and no fd, or (own pipe) success with the front-end's end attached.
   * @throws BackendError `PROTOCOL` (bad direction or phase, no fd, not a pipe or the wrong end, a
   *   ring started, a transfer still running), `UNSUPPORTED` (no state hooks).
   */
  async begin(params: DeviceStateParams, fd: OwnedFd | undefined, rings: StoppableRings): Promise<DeviceStateReply | FdReply> {
    const { saveState, loadState } = this.#device;
    if (saveState === undefined || loadState === undefined)
      throw new BackendError("UNSUPPORTED", "set_device_state_fd: the device has no state hooks", { request: REQUEST });
    const save = params.direction === DeviceStateDirection.SAVE;
    if (!save && params.direction !== DeviceStateDirection.LOAD)
      throw protocolError(REQUEST, `direction ${params.direction} is neither save (0) nor load (1)`, { actual: params.direction });
    if (params.phase !== 0) throw protocolError(REQUEST, `phase ${params.phase} is not stopped (0), the only phase defined`, { actual: params.phase });
    if (fd === undefined) throw protocolError(REQUEST, "no fd");
    for (let i = 0; i < rings.count; i++)
      if (rings.isStarted(i)) throw protocolError(REQUEST, `vring ${i} is started: the state moves only while every ring is stopped`);
    if (this.#transfer !== undefined && !this.#transfer.settled) throw protocolError(REQUEST, "a transfer is still running");
    await rings.quiesce();
    // An earlier transfer nobody checked is forgotten (its pipe end is already closed).
    this.#transfer = undefined;
    const direction = save ? "write" : "read";
    let reply: DeviceStateReply | FdReply = { error: 0, noFd: true };
    let ours: OwnedFd;
    if (this.#options.ownPipe) {
      const { readEnd, writeEnd } = createPipe();
      ours = save ? writeEnd : readEnd;
      reply = new FdReply({ error: 0, noFd: false }, [save ? readEnd : writeEnd]);
    } else {
      ours = new OwnedFd(fd.transfer());
    }
    let pipe: PipeEnd;
    try {
      pipe = PipeEnd.open(ours, direction, ...(this.#options.reactor === undefined ? [] : [this.#options.reactor]));
    } catch (err) {
      if (reply instanceof FdReply) for (const f of reply.fds) f.close();
      if (!isTransportError(err) || (err.code !== "NOT_A_PIPE" && err.code !== "BAD_FD_MODE")) throw err;
      throw new BackendError(
        "PROTOCOL",
        `set_device_state_fd: ${err.message} (${save ? "save" : "load"} needs a pipe's ${direction} end)`,
        { request: REQUEST },
        { cause: err },
      );
    }
    const transfer = { pipe, done: Promise.resolve<Outcome>({ bytes: 0, error: undefined }), settled: false };
    transfer.done = this.#run(save, pipe).then((outcome) => {
      transfer.settled = true;
      this.#report({ kind: "device-state", direction: save ? "save" : "load", bytes: outcome.bytes, ...(outcome.error ? { error: outcome.error } : {}) });
      return outcome;
    });
    this.#transfer = transfer;
    return reply;
  }

  /**
   * Refuses `request` (a ring start) while a transfer runs: the device's state hook and its queue
   * handlers must not run at the same time, and the front-end starts the rings only after
   * CHECK_DEVICE_STATE.
   * @throws BackendError `PROTOCOL` while a transfer runs.
   */
  checkIdle(request: string): void {
    if (this.#transfer !== undefined && !this.#transfer.settled)
      throw protocolError(request, "a device state transfer is running: rings start after CHECK_DEVICE_STATE");
  }

  /**
   * CHECK_DEVICE_STATE: waits for the transfer to end.
   * @returns 0n when the device saved or loaded its state completely.
   * @throws the transfer's error (`STATE_TRUNCATED`, `STATE_INVALID`, `STATE_IO`,
   *   `STATE_SAVE_FAILED`, or the device's own typed error); BackendError `PROTOCOL` when no transfer
   *   was started.
   */
  async check(): Promise<bigint> {
    const transfer = this.#transfer;
    if (transfer === undefined) throw protocolError("CHECK_DEVICE_STATE", "no transfer to check (send SET_DEVICE_STATE_FD first)");
    const outcome = await transfer.done;
    if (this.#transfer === transfer) this.#transfer = undefined;
    if (outcome.error) throw outcome.error;
    return 0n;
  }

  /** Ends a running transfer (disconnect, reset): closes the pipe end and waits for the device's hook to return. Never rejects. */
  async abort(): Promise<void> {
    const transfer = this.#transfer;
    this.#transfer = undefined;
    if (transfer === undefined) return;
    transfer.pipe.close();
    await transfer.done;
  }

  async #run(save: boolean, pipe: PipeEnd): Promise<Outcome> {
    const device = this.#device;
    let bytes = 0;
    try {
      if (save) {
        const writer = new PipeStateWriter(pipe);
        try {
          await device.saveState?.(writer);
        } finally {
          bytes = writer.written;
        }
      } else {
        const reader = new PipeStateReader(pipe, this.#options.maxBytes);
        try {
          await device.loadState?.(reader);
          if (!(await reader.atEnd())) {
            throw new BackendError("STATE_INVALID", `set_device_state_fd: trailing bytes after the 0x${reader.consumed.toString(16)} bytes the device loaded`, {
              request: REQUEST,
              offset: reader.consumed,
            });
          }
        } finally {
          bytes = reader.consumed;
        }
      }
      return { bytes, error: undefined };
    } catch (err) {
      return { bytes, error: asStateError(save, err) };
    } finally {
      // SAFETY: the pipe end is this transfer's alone; closing it is the EOF a saving reader waits for.
      pipe.close();
    }
  }
}

/** What a hook threw, as a typed error: a `VhostUserError` as is, anything else `STATE_INVALID` (load) or `STATE_SAVE_FAILED` (save). */
function asStateError(save: boolean, err: unknown): VhostUserError {
  if (isVhostUserError(err)) return err;
  const text = err instanceof Error ? err.message : String(err);
  return save
    ? new BackendError("STATE_SAVE_FAILED", `set_device_state_fd: the device's saveState failed: ${text}`, { request: REQUEST }, { cause: err })
    : new BackendError("STATE_INVALID", `set_device_state_fd: the device refused the state: ${text}`, { request: REQUEST }, { cause: err });
}
