/**
 * A back-end's device state, fetched and loaded by the front-end (docs/protocol.md#device-state-transfer):
 * the front-end's half of migrating a back-end with internal state, or of a snapshot. Save: stop
 * every ring (GET_VRING_BASE), SET_DEVICE_STATE_FD (save) with the write end of a fresh pipe, read
 * the pipe to EOF, CHECK_DEVICE_STATE. Load: the same with the read end, writing the state and
 * closing. The pipe is read and written through the reactor, never blocking the event loop.
 * @module
 */
import { createPipe, isTransportError, PipeEnd, type OwnedFd } from "@vhostkit/transport";
import { ProtocolFeature } from "@vhostkit/wire";
import { Device } from "./device.js";
import { FrontendError } from "./errors.js";
import type { Frontend } from "./frontend.js";

/** Default cap on the state {@link saveDeviceState} accepts (256 MiB): a back-end cannot make the front-end buffer more. */
export const DEFAULT_MAX_DEVICE_STATE_BYTES = 256 * 1024 * 1024;

/** Options of {@link saveDeviceState}. */
export interface SaveDeviceStateOptions {
  /** Largest state accepted, bytes (default {@link DEFAULT_MAX_DEVICE_STATE_BYTES}); more is `PROTOCOL`. */
  readonly maxBytes?: number;
}

/**
 * The connection of `target`; for a {@link Device}, after checking DEVICE_STATE was negotiated and
 * stopping its queues (GET_VRING_BASE for each started one: the state moves only while every ring
 * is stopped).
 */
async function stoppedConnection(target: Device | Frontend, request: string): Promise<Frontend> {
  if (!(target instanceof Device)) return target;
  if ((target.info.ackedProtocolFeatures & ProtocolFeature.DEVICE_STATE) === 0n)
    throw new FrontendError("UNSUPPORTED", `${request}: the back-end does not offer DEVICE_STATE (device state transfer)`, { request });
  await target.stop();
  return target.connection;
}

/**
 * SET_DEVICE_STATE_FD with one end of a fresh pipe (the write end to save, the read end to load),
 * closed here once sent (the back-end holds its copy: a saving reader sees EOF once the back-end
 * closes it). Returns our end: the pipe's other end, or the back-end's own channel end when it
 * returned one (ours is closed then).
 */
async function openChannel(fe: Frontend, transfer: "save" | "load"): Promise<PipeEnd> {
  const { readEnd, writeEnd } = createPipe();
  const [ours, given] = transfer === "save" ? [readEnd, writeEnd] : [writeEnd, readEnd];
  const direction = transfer === "save" ? "read" : "write";
  let theirs: OwnedFd | undefined;
  try {
    theirs = await fe.setDeviceStateFd(transfer, given.fd);
  } catch (err) {
    ours.close();
    throw err;
  } finally {
    given.close();
  }
  if (theirs === undefined) return PipeEnd.open(ours, direction);
  ours.close();
  try {
    return PipeEnd.open(theirs, direction);
  } catch (err) {
    throw new FrontendError("PROTOCOL", `set_device_state_fd: the back-end's own channel end is unusable: ${(err as Error).message}`, {
      request: "SET_DEVICE_STATE_FD",
    });
  }
}

/**
 * Fetches the back-end's device state: stops the device's rings (a {@link Device}; a bare
 * {@link Frontend} must have stopped them already), SET_DEVICE_STATE_FD (save), reads the pipe to
 * EOF, CHECK_DEVICE_STATE. The device stays stopped: restart it with {@link Device.start}, or load
 * the state into another back-end with {@link loadDeviceState}.
 * @returns the state, in the back-end's own format.
 * @throws FrontendError `UNSUPPORTED` (DEVICE_STATE not negotiated), `REFUSED` (the back-end refused
 *   the transfer, or CHECK_DEVICE_STATE reported a failure), `PROTOCOL` (a state over `maxBytes`,
 *   an unusable channel from the back-end), `IO_ERROR` (the pipe failed), `DISCONNECTED`, `TIMEOUT`.
 */
export async function saveDeviceState(target: Device | Frontend, options: SaveDeviceStateOptions = {}): Promise<Uint8Array> {
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_DEVICE_STATE_BYTES;
  const fe = await stoppedConnection(target, "SET_DEVICE_STATE_FD");
  const end = await openChannel(fe, "save");
  const parts: Uint8Array[] = [];
  let total = 0;
  try {
    for (let chunk = await end.read(); chunk.byteLength > 0; chunk = await end.read()) {
      total += chunk.byteLength;
      if (total > maxBytes)
        throw new FrontendError("PROTOCOL", `set_device_state_fd: state longer than the limit of 0x${maxBytes.toString(16)} bytes`, {
          request: "SET_DEVICE_STATE_FD",
          expected: maxBytes,
        });
      parts.push(chunk);
    }
  } catch (err) {
    throw pipeError(err, "save");
  } finally {
    end.close();
  }
  await fe.checkDeviceState();
  const state = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    state.set(p, at);
    at += p.byteLength;
  }
  return state;
}

/**
 * Loads `state` (what {@link saveDeviceState} fetched from another instance of the same back-end)
 * into the back-end: stops the device's rings (a {@link Device}), SET_DEVICE_STATE_FD (load),
 * writes the state and closes the pipe, CHECK_DEVICE_STATE. Then start the rings as usual
 * ({@link Device.start}); the back-end continues from the loaded state.
 * @throws FrontendError `UNSUPPORTED` (DEVICE_STATE not negotiated), `REFUSED` (the back-end refused
 *   the transfer or the state), `PROTOCOL` (an unusable channel from the back-end), `IO_ERROR` (the
 *   pipe failed and the back-end still reported success), `DISCONNECTED`, `TIMEOUT`.
 */
export async function loadDeviceState(target: Device | Frontend, state: Uint8Array): Promise<void> {
  const fe = await stoppedConnection(target, "SET_DEVICE_STATE_FD");
  const end = await openChannel(fe, "load");
  let failed: unknown;
  try {
    await end.write(state);
  } catch (err) {
    // A back-end that refuses the state early closes its end (EPIPE): CHECK_DEVICE_STATE says why.
    failed = err;
  } finally {
    end.close();
  }
  await fe.checkDeviceState();
  if (failed !== undefined) throw pipeError(failed, "load");
}

/** A pipe failure as a front-end error: `IO_ERROR`, the transport error as the cause. */
function pipeError(err: unknown, direction: "save" | "load"): unknown {
  if (!isTransportError(err)) return err;
  return new FrontendError("IO_ERROR", `device state ${direction}: pipe: ${err.message}`, { request: "SET_DEVICE_STATE_FD" }, { cause: err });
}
