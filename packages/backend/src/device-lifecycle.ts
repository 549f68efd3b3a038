/**
 * When a device's lifecycle hooks run — `start` once its rings run, `stop` when the front-end stops
 * them, `reset` on a reset or disconnect — and what becomes of their errors: a hook never takes the
 * connection down; what it throws (or `start` rejects with) is reported as `device-error`.
 * @module
 */
import type { BackendChannel } from "./backend-client.js";
import type { DeviceBackend, DeviceContext } from "./device-backend.js";
import type { BackendEvent } from "./dispatcher-options.js";
import { BackendError } from "./errors.js";

/** Runs the lifecycle hooks of one device for one connection. */
export class DeviceLifecycle {
  readonly #device: DeviceBackend;
  readonly #report: (event: BackendEvent) => void;

  /**
   * @param device - the device whose hooks run.
   * @param report - receives `running` and `device-error` events; must not throw.
   */
  constructor(device: DeviceBackend, report: (event: BackendEvent) => void) {
    this.#device = device;
    this.#report = report;
  }

  /**
   * The device started (`true`) or stopped (`false`) running: reports it, then runs `stop` at once
   * or `start` with `context()` after the current call stack (its rejection is reported too).
   */
  runningChanged(running: boolean, context: () => DeviceContext): void {
    this.#report({ kind: "running", running });
    if (running) {
      const ctx = context();
      Promise.resolve()
        .then(() => this.#device.start?.(ctx))
        .catch((error: unknown) => this.#report({ kind: "device-error", error }));
    } else {
      this.#runHook(() => this.#device.stop?.());
    }
  }

  /** Runs the device's `reset` hook (RESET_DEVICE, RESET_OWNER, disconnect). */
  reset(): void {
    this.#runHook(() => this.#device.reset?.());
  }

  #runHook(hook: () => void): void {
    try {
      hook();
    } catch (error) {
      this.#report({ kind: "device-error", error });
    }
  }
}

/** The channel stand-in for a connection without SET_BACKEND_REQ_FD: every call fails with `NO_BACKEND_CHANNEL`. */
export function noBackendChannel(): BackendChannel {
  const fail = (request: string) => () =>
    Promise.reject(new BackendError("NO_BACKEND_CHANNEL", `${request}: the front-end sent no SET_BACKEND_REQ_FD`, { request: request.toUpperCase() }));
  return {
    canMap: false,
    shmemMap: fail("backend_shmem_map"),
    shmemUnmap: fail("backend_shmem_unmap"),
    configChanged: fail("backend_config_change_msg"),
    memRead: fail("backend_mem_read"),
    memReadInto: fail("backend_mem_read"),
    memWrite: fail("backend_mem_write"),
  };
}
