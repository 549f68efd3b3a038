import { chmodSync, lstatSync, unlinkSync } from "node:fs";
import { Endpoint, type EndpointOptions } from "./endpoint.js";
import { OwnedFd } from "./owned-fd.js";
import { TransportError } from "./transport-error.js";
import { classifyErrno, Errno } from "./sys/errno.js";
import { describeErrno } from "./errno-text.js";
import { lastErrno } from "./sys/libc.js";
import { AF_UNIX, SOCK_CLOEXEC, SOCK_NONBLOCK, SOCK_STREAM, sockaddrUn, socketSys } from "./sys/socket.js";
import { Reactor } from "./reactor.js";
import type { Watch } from "./watch.js";

/** Options of {@link listen}. */
export interface ListenOptions extends EndpointOptions {
  /** Permission bits for the socket file, e.g. 0o600 (default: umask applies). */
  readonly mode?: number;
  /** listen(2) backlog (default 1). */
  readonly backlog?: number;
}

function sysError(syscall: string, path: string, e = lastErrno()): TransportError {
  return new TransportError("SYSCALL", classifyErrno(e), `${syscall} ${path}: ${describeErrno(e)}`, { errno: e, syscall });
}

function address(path: string): Uint8Array {
  const a = sockaddrUn(path);
  if (!a) throw new TransportError("PATH_TOO_LONG", "broken", `socket path longer than 107 bytes: ${path}`);
  return a;
}

/**
 * Try to connect once without blocking; returns the fd or throws with errno. A listener whose
 * backlog is full gives EAGAIN (a blocking socket would sleep in connect(2) on the JS thread).
 */
function connectOnce(path: string): OwnedFd {
  const s = socketSys();
  const addr = address(path);
  const fd = s.socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) throw sysError("socket", path);
  const owned = new OwnedFd(fd);
  // SAFETY: addr is a 110-byte sockaddr_un; a non-blocking AF_UNIX connect completes or fails at once.
  if (s.connect(fd, addr, addr.length) !== 0) {
    const err = sysError("connect", path);
    owned.close();
    throw err;
  }
  return owned;
}

/**
 * A listening AF_UNIX socket that accepts peers in turn. `accept()` never blocks the JS thread
 * (non-blocking `accept4` plus a readiness wait through the {@link Reactor}; `close()` cancels it).
 */
export class Listener {
  readonly #fd: OwnedFd;
  readonly #watch: Watch;
  readonly #options: EndpointOptions;
  readonly #path: string;
  #closed = false;

  /** @internal use {@link listen}. */
  constructor(fd: OwnedFd, path: string, options: EndpointOptions) {
    this.#fd = fd;
    this.#path = path;
    this.#options = options;
    this.#watch = (options.reactor ?? Reactor.shared()).watch(fd.fd, `listener ${path}`);
  }

  /** Filesystem path of the socket. */
  get path(): string {
    return this.#path;
  }

  /**
   * Wait for the next peer and return an {@link Endpoint} owning its socket.
   * @throws TransportError `CLOSED` when the listener is closed while waiting, `SYSCALL` on accept failure.
   */
  async accept(): Promise<Endpoint> {
    for (;;) {
      if (this.#closed) throw new TransportError("CLOSED", "broken", `listener ${this.#path} closed`);
      // SAFETY: no address requested; SOCK_CLOEXEC applies to the new fd atomically.
      const fd = socketSys().accept4(this.#fd.fd, null, null, SOCK_CLOEXEC);
      if (fd >= 0) return new Endpoint(new OwnedFd(fd), this.#options);
      const e = lastErrno();
      if (e === Errno.EINTR || e === Errno.ECONNABORTED) continue;
      if (e !== Errno.EAGAIN) throw sysError("accept4", this.#path, e);
      await this.#watch.readable();
    }
  }

  /** Stop listening, remove the socket file, cancel a pending accept. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      unlinkSync(this.#path);
    } catch {
      // already removed by someone else: nothing to clean up
    }
    this.#watch.close();
    this.#fd.close();
  }

  /** `close()`. */
  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * Listen on `path`. A stale socket file (a socket nobody accepts on: connect gives ECONNREFUSED)
 * is unlinked first, as QEMU's tools do; a live socket or a non-socket file is left alone.
 * @throws TransportError `ADDR_IN_USE` (live socket or not a socket), `PATH_TOO_LONG`, `SYSCALL`.
 */
export function listen(path: string, options: ListenOptions = {}): Listener {
  const addr = address(path);
  let st;
  try {
    st = lstatSync(path);
  } catch {
    st = undefined;
  }
  if (st) {
    if (!st.isSocket()) throw new TransportError("ADDR_IN_USE", "broken", `${path} exists and is not a socket`);
    try {
      connectOnce(path).close();
      throw new TransportError("ADDR_IN_USE", "broken", `${path} has a live listener`);
    } catch (err) {
      if (err instanceof TransportError && err.errno === Errno.EAGAIN)
        throw new TransportError("ADDR_IN_USE", "broken", `${path} has a live listener (its backlog is full)`);
      if (!(err instanceof TransportError) || err.errno !== Errno.ECONNREFUSED) throw err;
      unlinkSync(path);
    }
  }
  const s = socketSys();
  const fd = s.socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) throw sysError("socket", path);
  const owned = new OwnedFd(fd);
  try {
    // SAFETY: addr is a 110-byte sockaddr_un.
    if (s.bind(fd, addr, addr.length) !== 0) throw sysError("bind", path);
    if (options.mode !== undefined) chmodSync(path, options.mode);
    if (s.listen(fd, options.backlog ?? 1) !== 0) throw sysError("listen", path);
  } catch (err) {
    owned.close();
    throw err;
  }
  try {
    return new Listener(owned, path, endpointOptions(options));
  } catch (err) {
    owned.close();
    throw err;
  }
}

/** Retry policy of {@link connect} for a back-end that is still starting. */
export interface RetryPolicy {
  /** Total attempts (default 1 = no retry). */
  readonly attempts: number;
  /** Delay between attempts in milliseconds. */
  readonly delayMs: number;
}

/** Options of {@link connect}. */
export interface ConnectOptions extends EndpointOptions {
  /** Retry ENOENT/ECONNREFUSED (a back-end that is still starting); default: one attempt. */
  readonly retry?: RetryPolicy;
  /**
   * How long to keep trying while the listener's backlog is full (EAGAIN: it is alive but has not
   * accepted the connections before ours), in milliseconds (default 5000). Tried again every few
   * milliseconds; the JS thread never sleeps in connect(2).
   */
  readonly busyTimeoutMs?: number;
}

/** Longest pause between connect attempts while a listener's backlog is full (ms). */
const BUSY_RETRY_MAX_MS = 20;

/**
 * Connect to the vhost-user socket at `path`, without blocking the JS thread. ENOENT and
 * ECONNREFUSED are retried per `retry`; a full backlog (EAGAIN) for up to `busyTimeoutMs`.
 * @throws TransportError `SYSCALL` (errno ENOENT/ECONNREFUSED/EACCES/EAGAIN...) after the last attempt.
 */
export async function connect(path: string, options: ConnectOptions = {}): Promise<Endpoint> {
  const attempts = options.retry?.attempts ?? 1;
  const epOptions = endpointOptions(options);
  const busyUntil = performance.now() + (options.busyTimeoutMs ?? 5000);
  let pause = 1;
  for (let i = 1; ; ) {
    try {
      return new Endpoint(connectOnce(path), epOptions);
    } catch (err) {
      if (err instanceof TransportError && err.errno === Errno.EAGAIN && performance.now() < busyUntil) {
        await new Promise((r) => setTimeout(r, pause));
        pause = Math.min(BUSY_RETRY_MAX_MS, pause * 2);
        continue;
      }
      const retryable = err instanceof TransportError && (err.errno === Errno.ENOENT || err.errno === Errno.ECONNREFUSED);
      if (!retryable || i >= attempts) throw err;
      i++;
      await new Promise((r) => setTimeout(r, options.retry?.delayMs ?? 0));
    }
  }
}

/** The {@link EndpointOptions} part of a wider options object (exactOptionalPropertyTypes-safe). */
function endpointOptions(o: EndpointOptions): EndpointOptions {
  const { maxFds, maxPayload, fdsAllowed, reactor } = o;
  return {
    ...(maxFds === undefined ? {} : { maxFds }),
    ...(maxPayload === undefined ? {} : { maxPayload }),
    ...(fdsAllowed === undefined ? {} : { fdsAllowed }),
    ...(reactor === undefined ? {} : { reactor }),
  };
}
