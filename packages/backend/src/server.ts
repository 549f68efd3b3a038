/**
 * Serving a device: listen on a path and serve one front-end at a time, or serve an
 * already-connected socket.
 * @module
 */
import { Endpoint, OwnedFd, listen, type Listener, type ListenOptions } from "@vhostkit/transport";
import type { DeviceBackend } from "./device-backend.js";
import { checkDevice } from "./device-checks.js";
import { Dispatcher } from "./dispatcher.js";
import type { DispatcherOptions } from "./dispatcher-options.js";

/** Options of {@link serve}. */
export interface ServeOptions extends DispatcherOptions {
  /** Permission bits of the socket file (e.g. 0o600). */
  readonly mode?: number;
  /** Serve only this many front-ends, then stop listening (default: unlimited). */
  readonly connections?: number;
}

/** A running server: {@link BackendServer.close} stops it. */
export interface BackendServer {
  /** Socket path. */
  readonly path: string;
  /** Resolves when the server stopped (closed, or `connections` front-ends served). */
  readonly done: Promise<void>;
  /** The dispatcher of the front-end being served now, if any. */
  readonly current: Dispatcher | undefined;
  /** Stop listening and drop the current front-end. Idempotent. */
  close(): void;
  /**
   * Graceful stop, what a process does on SIGTERM: stops accepting, lets the queue handlers running
   * now finish (no new run starts), then drops the front-end — rings stopped, the sockets and
   * eventfds closed, guest memory and the inflight area unmapped, the device reset — and resolves
   * once {@link BackendServer.done} did, or after `graceMs` milliseconds (default 5000) at the latest:
   * a handler still running then is abandoned, the memory it views staying mapped until it returns.
   * Requests the driver queued meanwhile stay in the rings for the next back-end. Never rejects.
   */
  shutdown(options?: { readonly graceMs?: number }): Promise<void>;
}

/**
 * Listen on `path` (a stale socket file is replaced) and serve `device` to one front-end at a
 * time; after a disconnect the device is reset and the next front-end is accepted, as
 * qemu-storage-daemon does.
 * @throws BackendError `BAD_DEVICE` (invalid device definition); TransportError from `listen`
 *   (`ADDR_IN_USE`, `PATH_TOO_LONG`, `SYSCALL`).
 */
export function serve(path: string, device: DeviceBackend, options: ServeOptions = {}): BackendServer {
  checkDevice(device); // before listening: a device no connection could be served with
  const listenOptions: ListenOptions = {
    ...(options.mode === undefined ? {} : { mode: options.mode }),
    ...(options.reactor === undefined ? {} : { reactor: options.reactor }),
  };
  const listener: Listener = listen(path, listenOptions);
  let current: Dispatcher | undefined;
  let closed = false;
  const done = (async () => {
    try {
      for (let n = 0; options.connections === undefined || n < options.connections; n++) {
        let ep: Endpoint;
        try {
          ep = await listener.accept();
        } catch {
          return; // closed
        }
        try {
          current = new Dispatcher(ep, device, options);
        } catch (err) {
          ep.close();
          throw err; // the device definition is invalid: no connection can be served
        }
        await current.run();
        current = undefined;
        if (closed) return;
      }
    } finally {
      listener.close();
    }
  })();
  return {
    path,
    done,
    get current() {
      return current;
    },
    close() {
      closed = true;
      listener.close();
      current?.close();
    },
    async shutdown(shutdownOptions = {}) {
      closed = true;
      listener.close();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const grace = new Promise<void>((r) => (timer = setTimeout(r, shutdownOptions.graceMs ?? 5000)));
      const d = current;
      if (d !== undefined) await Promise.race([d.drain(), grace]);
      d?.close();
      await Promise.race([done.catch(() => undefined), grace]);
      clearTimeout(timer);
    },
  };
}

/**
 * Serve `device` on an already-connected socket `fd` (ownership taken), e.g. one passed by a
 * parent process or QEMU's `addr.type=fd`. Resolves when the front-end disconnects.
 */
export async function serveFd(fd: number | OwnedFd, device: DeviceBackend, options: DispatcherOptions = {}): Promise<void> {
  const owned = typeof fd === "number" ? new OwnedFd(fd) : fd;
  const ep = new Endpoint(owned, options.reactor === undefined ? {} : { reactor: options.reactor });
  await new Dispatcher(ep, device, options).run();
}
