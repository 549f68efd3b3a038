/**
 * Bun only: a tiny native thread (compiled at run time with Bun's built-in TinyCC, `bun:ffi` `cc`)
 * that blocks in `poll()` on the reactor's epoll fd and wakes the JavaScript thread through a
 * thread-safe `JSCallback` — the Bun counterpart of Node's `uv_poll` on the epoll fd.
 *
 * Why: a koffi `.async` call costs a worker hand-off in **and** a completion hand-off out (≈ 55 µs
 * on a small VM); this thread is already waiting when data arrives, so only the wake-up of the
 * event loop remains (≈ 23 µs measured). The thread waits for an explicit "arm" (an eventfd it reads)
 * before each poll, so it never spins, and it exits when told to.
 *
 * The C source declares its few libc prototypes itself, so no system headers are needed. When `cc`
 * is unavailable or fails, {@link startBunPoller} returns `undefined` and the reactor falls back to
 * koffi's `.async` epoll_wait.
 * @module
 */
import { eventfdSys, EFD_CLOEXEC } from "./eventfd.js";
import { socketSys } from "./socket.js";

const SOURCE = `
struct pollfd { int fd; short events; short revents; };
int poll(struct pollfd *fds, unsigned long nfds, int timeout);
long read(int fd, void *buf, unsigned long n);
int close(int fd);
typedef unsigned long pthread_t;
int pthread_create(pthread_t *t, const void *attr, void *(*fn)(void *), void *arg);
int pthread_detach(pthread_t t);
typedef void (*cb_t)(int);
struct poller { int epfd; int armfd; cb_t cb; };
static void *loop(void *arg) {
  struct poller *p = arg; struct pollfd f; unsigned long long v;
  for (;;) {
    if (read(p->armfd, &v, 8) != 8) continue;       /* blocks until armed */
    if (v >= 1000000000ULL) { close(p->armfd); return 0; }  /* stop: the thread owns armfd */
    f.fd = p->epfd; f.events = 1; f.revents = 0;    /* POLLIN: events are ready */
    while (poll(&f, 1, -1) < 1) {}
    p->cb(f.revents);
  }
}
static struct poller pollers[64]; static int npollers;
int vhostkit_poller_start(int epfd, int armfd, cb_t cb) {
  pthread_t t; struct poller *p;
  if (npollers >= 64) return -1;
  p = &pollers[npollers++]; p->epfd = epfd; p->armfd = armfd; p->cb = cb;
  if (pthread_create(&t, 0, loop, p)) return -1;
  pthread_detach(t);
  return 0;
}
`;

/** A running poller thread for one epoll fd. */
export interface BunPoller {
  /** Ask the thread to wait for the epoll fd once more (it calls back when events are ready). */
  arm(): void;
  /**
   * Stop the thread: it exits at its next read of the arm fd (right away when idle, after its
   * current poll otherwise) and closes that fd itself.
   */
  stop(): void;
}

interface BunFfi {
  cc(opts: { source: string; symbols: Record<string, { args: string[]; returns: string }> }): { symbols: Record<string, (...a: unknown[]) => number> };
  JSCallback: new (fn: (...a: unknown[]) => void, def: { args: string[]; returns: string; threadsafe: boolean }) => { ptr: unknown; close(): void };
}

let ffi: BunFfi | null | undefined;
let start: ((epfd: number, armfd: number, cb: unknown) => number) | undefined;

function load(): boolean {
  if (ffi === undefined) {
    try {
      const req = (import.meta as unknown as { require?: (m: string) => unknown }).require;
      ffi = typeof req === "function" ? (req("bun:ffi") as BunFfi) : null;
      const lib = ffi?.cc({ source: SOURCE, symbols: { vhostkit_poller_start: { args: ["int", "int", "function"], returns: "int" } } });
      start = lib?.symbols["vhostkit_poller_start"] as typeof start;
    } catch {
      ffi = null;
    }
  }
  return ffi !== null && start !== undefined;
}

/** True when running under Bun (the only runtime where this poller is used). */
export const IS_BUN = typeof (process.versions as Record<string, string | undefined>)["bun"] === "string";

/**
 * Start a poller thread for `epfd` (borrowed); `onReady` runs on the JavaScript thread each time
 * the armed thread saw the epoll fd readable. Returns `undefined` when not under Bun or when
 * `bun:ffi`'s compiler is unavailable.
 */
export function startBunPoller(epfd: number, onReady: () => void): BunPoller | undefined {
  if (!IS_BUN || !load() || ffi === null || ffi === undefined || start === undefined) return undefined;
  const armfd = eventfdSys(0, EFD_CLOEXEC); // blocking on purpose: the thread sleeps in read()
  if (armfd < 0) return undefined;
  const cb = new ffi.JSCallback(() => onReady(), { args: ["int"], returns: "void", threadsafe: true });
  // SAFETY: the C side keeps epfd/armfd/cb.ptr until it reads the stop value; cb is closed only after.
  if (start(epfd, armfd, cb.ptr) !== 0) {
    cb.close();
    socketSys().close(armfd);
    return undefined;
  }
  const one = new Uint8Array(8);
  new DataView(one.buffer).setBigUint64(0, 1n, true);
  const stopValue = new Uint8Array(8);
  new DataView(stopValue.buffer).setBigUint64(0, 1_000_000_000n, true);
  return {
    arm() {
      socketSys().write(armfd, one, 8);
    },
    stop() {
      socketSys().write(armfd, stopValue, 8);
    },
  };
}
