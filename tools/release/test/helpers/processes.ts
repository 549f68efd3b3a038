/**
 * Child processes for the release rehearsal, all under one deadline. Every child gets its own
 * process group with piped stdout and stderr (never inherited), so that a timeout kills the whole
 * group (npm's and bun's own children too) and no stray child keeps a pipe of the test runner open.
 * Whatever is still alive when the test process exits is killed.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";

const live = new Set<ChildProcess>();

/** A signal to the child's whole process group (its leader may be gone while a grandchild holds a pipe). */
function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // already gone
  }
}

function killGroup(child: ChildProcess): void {
  signalGroup(child, "SIGKILL");
}

process.on("exit", () => {
  for (const child of live) killGroup(child);
});

/** A time budget shared by every step: each wait is bounded by what is left of it. */
export class Deadline {
  readonly #end: number;
  readonly #totalMs: number;

  constructor(totalMs: number) {
    this.#totalMs = totalMs;
    this.#end = Date.now() + totalMs;
  }

  /** Milliseconds left; throws a clear error once the budget is spent. */
  remaining(what: string): number {
    const left = this.#end - Date.now();
    if (left <= 0) throw new Error(`release rehearsal: the ${this.#totalMs / 1000} s deadline passed before ${what}`);
    return left;
  }
}

/** Options of {@link run} and {@link LongRunning}. */
export interface RunOptions {
  readonly cwd: string;
  readonly env?: NodeJS.ProcessEnv;
}

/** Output and exit status of a finished command. */
export interface RunResult {
  readonly status: number | null;
  readonly signal: NodeJS.Signals | null;
  /** stdout and stderr interleaved, as they came. */
  readonly output: string;
  /** stdout alone (npx and bunx report their installs on stderr). */
  readonly stdout: string;
}

function describe(cmd: string, args: readonly string[]): string {
  return [cmd.split("/").pop(), ...args].join(" ");
}

/**
 * Runs a command to its end (stdout and stderr interleaved in `output`), killing its process group
 * when the deadline passes. Rejects on a non-zero exit unless `allowFailure`.
 */
export async function run(
  cmd: string,
  args: readonly string[],
  options: RunOptions & { readonly deadline: Deadline; readonly allowFailure?: boolean },
): Promise<RunResult> {
  const label = describe(cmd, args);
  const budget = options.deadline.remaining(label);
  const child = spawn(cmd, args, { cwd: options.cwd, env: options.env ?? process.env, stdio: ["ignore", "pipe", "pipe"], detached: true });
  live.add(child);
  let output = "";
  let stdout = "";
  child.stdout.setEncoding("utf8").on("data", (s: string) => ((output += s), (stdout += s)));
  child.stderr.setEncoding("utf8").on("data", (s: string) => (output += s));
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    killGroup(child);
  }, budget);
  const result = await new Promise<RunResult>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (status, signal) => resolve({ status, signal, output, stdout }));
  }).finally(() => {
    clearTimeout(timer);
    live.delete(child);
  });
  if (timedOut) throw new Error(`${label}: killed at the deadline (in ${options.cwd})\n${result.output.slice(-4000)}`);
  if (result.status !== 0 && options.allowFailure !== true) {
    throw new Error(`${label} exited with ${result.status ?? result.signal} (in ${options.cwd})\n${result.output.slice(-6000)}`);
  }
  return result;
}

/**
 * A server process whose stdout is JSON lines (Verdaccio's launcher, vhostkit-gpu): wait for a line
 * with {@link event}, stop it with {@link stop}. stderr is kept for error messages.
 */
export class LongRunning {
  readonly #child: ChildProcess;
  readonly #label: string;
  readonly #lines: Record<string, unknown>[] = [];
  #stderr = "";
  #waiters: { match: (line: Record<string, unknown>) => boolean; resolve: (line: Record<string, unknown>) => void }[] = [];
  readonly #exited: Promise<void>;

  constructor(cmd: string, args: readonly string[], options: RunOptions) {
    this.#label = describe(cmd, args);
    const child = spawn(cmd, args, { cwd: options.cwd, env: options.env ?? process.env, stdio: ["ignore", "pipe", "pipe"], detached: true });
    this.#child = child;
    live.add(child);
    child.stderr.setEncoding("utf8").on("data", (s: string) => (this.#stderr = `${this.#stderr}${s}`.slice(-8000)));
    createInterface({ input: child.stdout }).on("line", (text) => {
      let line: Record<string, unknown>;
      try {
        line = JSON.parse(text) as Record<string, unknown>;
      } catch {
        line = { text };
      }
      this.#lines.push(line);
      this.#waiters = this.#waiters.filter((w) => (w.match(line) ? (w.resolve(line), false) : true));
    });
    this.#exited = new Promise<void>((resolve) => {
      child.once("error", () => resolve());
      child.once("close", () => resolve());
    }).finally(() => live.delete(child));
  }

  /** Process id of the child (undefined when it could not be started). */
  get pid(): number | undefined {
    return this.#child.pid;
  }

  /** The first stdout line whose `event` is `name`; rejects if the process ends first or at the deadline. */
  async event(name: string, deadline: Deadline): Promise<Record<string, unknown>> {
    const seen = this.#lines.find((l) => l["event"] === name);
    if (seen !== undefined) return seen;
    const what = `${this.#label} printed "${name}"`;
    const budget = deadline.remaining(what);
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      return await Promise.race([
        new Promise<Record<string, unknown>>((resolve) => this.#waiters.push({ match: (l) => l["event"] === name, resolve })),
        this.#exited.then(() => {
          throw new Error(`${this.#label} ended before "${name}":\n${this.#stderr}`);
        }),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`release rehearsal: deadline passed waiting until ${what}\n${this.#stderr}`)), budget);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * SIGTERM to the process group (a launcher such as npx or bunx passes no signal on), then SIGKILL
   * to the group if it has not ended within `graceMs`; resolves once it has.
   */
  async stop(graceMs = 5000): Promise<void> {
    if (this.#child.exitCode === null && this.#child.signalCode === null) signalGroup(this.#child, "SIGTERM");
    const timer = setTimeout(() => killGroup(this.#child), graceMs);
    await this.#exited;
    clearTimeout(timer);
  }
}
