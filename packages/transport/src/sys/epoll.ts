/**
 * epoll(7) through koffi: the readiness primitive behind {@link "../reactor.js"}.
 * @module
 */
import { koffi, libc } from "./libc.js";

/** `EPOLL_CLOEXEC`. */
export const EPOLL_CLOEXEC = 0o2000000;
/** `epoll_ctl` operations. */
export const EPOLL_CTL = { ADD: 1, DEL: 2, MOD: 3 } as const;
/** `epoll_event.events` bits (Linux values). */
export const EPOLL = { IN: 0x001, OUT: 0x004, ERR: 0x008, HUP: 0x010, RDHUP: 0x2000, ET: 1 << 31 } as const;

/**
 * `sizeof(struct epoll_event)`: 12 on x86-64 (the struct is packed there), 16 elsewhere (u32 events,
 * 4 bytes of padding, u64 data).
 */
export const EPOLL_EVENT_SIZE = process.arch === "x64" ? 12 : 16;
/** Offset of the u64 `data` field inside `struct epoll_event`. */
export const EPOLL_DATA_OFFSET = process.arch === "x64" ? 4 : 8;

/** Lazily declared epoll functions. @internal */
export interface EpollSys {
  epoll_create1(flags: number): number;
  epoll_ctl(epfd: number, op: number, fd: number, event: unknown): number;
  epoll_wait: ((epfd: number, events: unknown, max: number, timeout: number) => number) & {
    async: (epfd: number, events: unknown, max: number, timeout: number, cb: (err: unknown, n: number) => void) => void;
  };
}

let sys: EpollSys | undefined;

/** The epoll functions, declared on first use. @internal */
export function epollSys(): EpollSys {
  if (sys) return sys;
  const lib = libc();
  // SAFETY: glibc prototypes; event pointers always point into native memory (never a JS buffer),
  // because epoll_wait runs on a koffi worker thread while JS keeps running.
  sys = {
    epoll_create1: lib.func("int epoll_create1(int)"),
    epoll_ctl: lib.func("int epoll_ctl(int, int, int, void *)"),
    epoll_wait: lib.func("int epoll_wait(int, void *, int, int)"),
  } as unknown as EpollSys;
  return sys;
}

/** A readiness watch integrated into Node's own event loop (libuv `uv_poll`), no thread involved. */
export interface LoopPoll {
  /** Start (or keep) watching for readability; `onReadable` runs on the JS thread. */
  start(): void;
  /** Stop watching; the handle no longer keeps the event loop alive. */
  stop(): void;
}

/**
 * True when `koffi.node.poll` may be used: only under Node. Under Bun it aborts the process inside
 * `uv_poll_init_socket` (docs/performance.md#wait-mechanism-per-runtime), so the reactor must never call it there.
 */
export const HAS_LOOP_POLL = typeof (process.versions as Record<string, string | undefined>)["bun"] !== "string";

/**
 * Watch `fd` (borrowed, e.g. an epoll fd) for readability in the runtime's own event loop.
 * Only valid when {@link HAS_LOOP_POLL}.
 */
export function loopPoll(fd: number, onReadable: () => void): LoopPoll {
  // SAFETY: Node only (HAS_LOOP_POLL); the handle is created stopped and lives as long as the reactor.
  const h = koffi.node.poll(fd, { readable: true }, () => onReadable());
  h.stop();
  let running = false;
  return {
    start() {
      if (running) return;
      running = true;
      h.start({ readable: true }, () => onReadable());
    },
    stop() {
      if (!running) return;
      running = false;
      h.stop();
    },
  };
}
