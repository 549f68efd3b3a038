/**
 * A long-running child process (a back-end under test) that reports progress as stdout lines. Its
 * stdout and stderr are piped, never inherited (a stray child holding the test runner's pipe keeps
 * the runner waiting), it is killed if this process exits first, and both its lines and its exit are
 * events: {@link LineProcess.line} resolves on the line itself and rejects as soon as the process
 * exits without printing it. Deadlines are safety nets for a child that hangs, never the way a test
 * waits.
 */
import { spawn, type ChildProcessByStdio } from "node:child_process";
import { createInterface } from "node:readline";
import type { Readable } from "node:stream";

/** How a child process ended (`error` when it could not be started). */
export interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly error?: Error;
}

interface Waiter {
  readonly match: (line: string) => boolean;
  readonly resolve: (line: string) => void;
  readonly reject: (err: Error) => void;
}

/** A child process whose stdout lines and exit can be awaited. */
export class LineProcess {
  /** The process (stdin ignored, stdout and stderr piped). */
  readonly child: ChildProcessByStdio<null, Readable, Readable>;
  /** Every stdout line so far. */
  readonly lines: string[] = [];
  /** Resolves once the process has exited and its output is read. */
  readonly exited: Promise<Exit>;
  readonly #label: string;
  readonly #waiters = new Set<Waiter>();
  #stderr = "";
  #exit: Exit | undefined;

  /** Starts `command ...args`. */
  constructor(command: string, args: readonly string[]) {
    this.#label = `${command} ${args.join(" ")}`;
    this.child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
    const kill = (): void => void this.child.kill("SIGKILL");
    process.once("exit", kill);
    this.child.stderr.setEncoding("utf8").on("data", (d: string) => (this.#stderr += d));
    createInterface({ input: this.child.stdout }).on("line", (line) => {
      this.lines.push(line);
      for (const w of this.#waiters) {
        if (!w.match(line)) continue;
        this.#waiters.delete(w);
        w.resolve(line);
      }
    });
    this.exited = new Promise<Exit>((resolve) => {
      const done = (exit: Exit): void => {
        if (this.#exit !== undefined) return;
        this.#exit = exit;
        process.off("exit", kill);
        for (const w of this.#waiters)
          w.reject(new Error(`${this.#label} ended (${this.#describe(exit)}) before the line awaited; stderr: ${this.#stderr.trim()}`));
        this.#waiters.clear();
        resolve(exit);
      };
      this.child.once("close", (code, signal) => done({ code, signal }));
      this.child.once("error", (error) => done({ code: null, signal: null, error }));
    });
  }

  /** What the process wrote to stderr so far. */
  get stderr(): string {
    return this.#stderr;
  }

  /** True once the process has exited. */
  get ended(): boolean {
    return this.#exit !== undefined;
  }

  /**
   * The first stdout line, already printed or still to come, that `match` accepts. Rejects when the
   * process exits first, or (safety net) when no such line came within `withinMs`.
   */
  line(match: (line: string) => boolean, withinMs = 30_000): Promise<string> {
    const seen = this.lines.find(match);
    if (seen !== undefined) return Promise.resolve(seen);
    if (this.#exit !== undefined) return Promise.reject(new Error(`${this.#label} ended (${this.#describe(this.#exit)}); stderr: ${this.#stderr.trim()}`));
    return new Promise<string>((resolve, reject) => {
      const deadline = setTimeout(() => {
        this.#waiters.delete(w);
        reject(new Error(`${this.#label}: no such line within ${withinMs} ms; stdout: ${this.lines.join(" | ")}; stderr: ${this.#stderr.trim()}`));
      }, withinMs);
      deadline.unref();
      const w: Waiter = {
        match,
        resolve: (line) => (clearTimeout(deadline), resolve(line)),
        reject: (err) => (clearTimeout(deadline), reject(err)),
      };
      this.#waiters.add(w);
    });
  }

  /** Sends `signal` unless the process has already exited, then waits for the exit (SIGKILL after `killAfterMs`). Idempotent. */
  async stop(signal: NodeJS.Signals = "SIGTERM", killAfterMs = 10_000): Promise<Exit> {
    if (this.#exit === undefined) {
      this.child.kill(signal);
      const hard = setTimeout(() => this.child.kill("SIGKILL"), killAfterMs);
      hard.unref();
      await this.exited;
      clearTimeout(hard);
    }
    return this.exited;
  }

  #describe(exit: Exit): string {
    return exit.error !== undefined ? `failed to start: ${exit.error.message}` : `code ${exit.code}, signal ${exit.signal}`;
  }
}
