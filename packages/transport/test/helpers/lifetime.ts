/**
 * Test helpers: what a test opens is released when the test ends, passed or failed. A failed
 * assertion must not leave a socket watched by the reactor (a parked wait keeps the process, and so
 * the test runner, alive) or a child process holding the runner's pipes.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestContext } from "node:test";

/** Anything with an idempotent `close()`: Endpoint, EventFd, Listener, OwnedFd, Reactor. */
export interface Closable {
  close(): unknown;
}

const opened = new WeakMap<TestContext, Closable[]>();

/**
 * Closes `things` when test `t` ends, however it ends: everything registered for `t`, last first
 * (an endpoint before the private reactor it was created on). Closing is idempotent, so the test may
 * still close them itself, e.g. before it counts fds.
 * @returns `things`, for destructuring.
 */
export function closeAfter<T extends readonly Closable[]>(t: TestContext, ...things: T): T {
  let list = opened.get(t);
  if (list === undefined) {
    const mine: Closable[] = [];
    opened.set(t, mine);
    t.after(async () => {
      for (const x of mine.reverse()) await x.close();
    });
    list = mine;
  }
  list.push(...things);
  return things;
}

/** How a child process ended. */
export interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

/** A fixture script running in its own process. */
export interface FixtureProcess {
  readonly child: ChildProcess;
  /** Resolves when the process exits; rejects (and kills it) if it has not exited within `exitWithinMs`. */
  readonly exited: Promise<Exit>;
  /** What it wrote to stdout and stderr so far (for assertion messages). */
  output(): string;
}

/**
 * Runs `script` (a runtime-neutral .mjs) with this runtime; `extraFds` become its fds 3, 4, ....
 * Its stdout and stderr go to a log file, never to a pipe: the child holds none of the test runner's
 * pipes, and this process holds no fd for it (tests count fds while it runs). The process is killed
 * when test `t` ends if it still runs. The exit deadline is a safety net for a child that hangs, not
 * a synchronisation: tests wait for `exited`.
 */
export function spawnFixture(t: TestContext, script: string, args: readonly string[], extraFds: readonly number[] = [], exitWithinMs = 30_000): FixtureProcess {
  const dir = mkdtempSync(join(tmpdir(), "vhostkit-fixture-"));
  const log = join(dir, "output.log");
  const fd = openSync(log, "w");
  let child: ChildProcess;
  try {
    child = spawn(process.execPath, [script, ...args], { stdio: ["ignore", fd, fd, ...extraFds] });
  } finally {
    closeSync(fd);
  }
  const output = (): string => readFileSync(log, "utf8");
  const exited = new Promise<Exit>((resolve, reject) => {
    const deadline = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${script} ${args.join(" ")} did not exit within ${exitWithinMs} ms: ${output()}`));
    }, exitWithinMs);
    deadline.unref();
    child.once("exit", (code, signal) => {
      clearTimeout(deadline);
      resolve({ code, signal });
    });
  });
  exited.catch(() => undefined); // a test that never waits for the exit must not see an unhandled rejection
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  });
  return { child, exited, output };
}
