/**
 * Child processes with line-based readiness (no sleeps) and a minimal QMP client.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { connect, type Socket } from "node:net";
import { createInterface } from "node:readline";

/**
 * `p`, or a rejection naming `what` once `ms` have passed: every wait on a peer has a deadline
 * shorter than the test's, so a silent peer fails the test with a reason instead of a timeout.
 */
export async function withDeadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** A child process whose stdout lines are collected; wait for a line with {@link LineProcess.line}. */
export class LineProcess {
  readonly child: ChildProcess;
  readonly lines: string[] = [];
  stderr = "";
  #waiters: { match: (l: string) => boolean; resolve: (l: string) => void; reject: (e: Error) => void }[] = [];
  #exited: Promise<number | null>;
  readonly #listeners: ((l: string) => void)[] = [];

  constructor(cmd: string, args: readonly string[], options: { readonly stdin?: boolean } = {}) {
    this.child = spawn(cmd, [...args], { stdio: [options.stdin === true ? "pipe" : "ignore", "pipe", "pipe"] });
    createInterface({ input: this.child.stdout! }).on("line", (l) => {
      this.lines.push(l);
      for (const f of this.#listeners) f(l);
      this.#waiters = this.#waiters.filter((w) => (w.match(l) ? (w.resolve(l), false) : true));
    });
    this.child.stderr!.on("data", (b: Buffer) => (this.stderr += b.toString()));
    // A test that dies without stop() must not leave its peer running.
    const kill = () => this.child.kill("SIGKILL");
    process.once("exit", kill);
    this.#exited = new Promise((resolve) => {
      const ended = (how: string, code: number | null) => {
        process.off("exit", kill);
        for (const w of this.#waiters) w.reject(new Error(`${cmd} ${how} before the expected line\nstdout: ${this.lines.join("\n")}\nstderr: ${this.stderr}`));
        this.#waiters = [];
        resolve(code);
      };
      this.child.once("exit", (code, signal) => ended(`exited (${code ?? signal})`, code));
      this.child.once("error", (err) => ended(`could not start (${err.message})`, null));
    });
  }

  /** The first line (seen or future) for which `match` is true; rejects when the process exits first. */
  line(match: string | ((l: string) => boolean)): Promise<string> {
    const m = typeof match === "string" ? (l: string) => l.includes(match) : match;
    const seen = this.lines.find(m);
    if (seen !== undefined) return Promise.resolve(seen);
    if (this.child.exitCode !== null || this.child.signalCode !== null)
      return Promise.reject(new Error(`process already exited; stdout: ${this.lines.join("\n")}\nstderr: ${this.stderr}`));
    return new Promise((resolve, reject) => this.#waiters.push({ match: m, resolve, reject }));
  }

  /** Calls `f` for every future stdout line. */
  onLine(f: (l: string) => void): void {
    this.#listeners.push(f);
  }

  /** Writes one line to stdin. */
  send(line: string): void {
    this.child.stdin!.write(`${line}\n`);
  }

  /** Resolves with the exit code once the process ended. */
  get exited(): Promise<number | null> {
    return this.#exited;
  }

  /** SIGTERM (if still running), SIGKILL if it has not exited 5 s later, and wait for the exit. */
  async stop(): Promise<number | null> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return this.#exited;
    this.child.kill("SIGTERM");
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 5000);
    try {
      return await this.#exited;
    } finally {
      clearTimeout(timer);
    }
  }
}

/** A QMP connection (one command at a time), over a unix socket or a child's stdio. */
export class Qmp {
  readonly #write: (s: string) => void;
  readonly #close: () => void;
  readonly #queue: string[] = [];
  #wait: ((l: string) => void) | undefined;

  private constructor(write: (s: string) => void, close: () => void) {
    this.#write = write;
    this.#close = close;
  }

  #push(l: string): void {
    if (!l.startsWith("{") || l.includes('"event"')) return;
    if (this.#wait) {
      const w = this.#wait;
      this.#wait = undefined;
      w(l);
    } else this.#queue.push(l);
  }

  async #handshake(): Promise<this> {
    await this.#next(); // greeting: QEMU is up
    await this.execute("qmp_capabilities");
    return this;
  }

  /** Connects to a QMP unix socket and leaves capabilities negotiation mode. */
  static async connect(path: string): Promise<Qmp> {
    const sock: Socket = connect(path);
    await new Promise<void>((resolve, reject) => sock.once("connect", resolve).once("error", reject));
    const q = new Qmp(
      (s) => void sock.write(s),
      () => sock.destroy(),
    );
    createInterface({ input: sock }).on("line", (l) => q.#push(l));
    return q.#handshake();
  }

  /** QMP on the stdio of `p` (`-qmp stdio`, started with `stdin: true`); the greeting is the readiness signal. */
  static overStdio(p: LineProcess): Promise<Qmp> {
    const q = new Qmp(
      (s) => p.send(s.trimEnd()),
      () => undefined,
    );
    for (const l of p.lines) q.#push(l);
    p.onLine((l) => q.#push(l));
    return q.#handshake();
  }

  #next(): Promise<string> {
    const l = this.#queue.shift();
    if (l !== undefined) return Promise.resolve(l);
    return new Promise((r) => (this.#wait = r));
  }

  /** Runs a command; resolves with `return`, rejects with the QMP error. */
  async execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    this.#write(`${JSON.stringify({ execute: command, ...(args === undefined ? {} : { arguments: args }) })}\n`);
    const reply = JSON.parse(await this.#next()) as { return?: unknown; error?: { desc: string } };
    if (reply.error) throw new Error(`qmp ${command}: ${reply.error.desc}`);
    return reply.return;
  }

  /** An HMP command through `human-monitor-command`. */
  async hmp(commandLine: string): Promise<string> {
    return (await this.execute("human-monitor-command", { "command-line": commandLine })) as string;
  }

  close(): void {
    this.#close();
  }
}
