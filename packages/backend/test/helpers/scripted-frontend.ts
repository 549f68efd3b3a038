/**
 * A hand-played front-end for the back-end tests: raw frames over a real socket to a device running
 * in another process, guest RAM from memfd, and the virtqueue driver side as the guest.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { connect, Endpoint, type ReceivedMessage } from "@vhostkit/transport";
import { decodeReply, encodeMessage, FrontendRequest, HEADER_SIZE, UPSTREAM, type Dialect, type FrontendRequestName } from "@vhostkit/wire";

/** A device process started from a fixture script; its stdout lines are collected. */
export class DeviceProcess {
  readonly child: ChildProcess;
  readonly dir: string;
  readonly socket: string;
  readonly lines: string[] = [];
  readonly stderr: string[] = [];
  #waiters: { match: (l: string) => boolean; resolve: (l: string) => void }[] = [];

  constructor(script: string, args: string[] = []) {
    this.dir = mkdtempSync(join(tmpdir(), "vhostkit-backend-"));
    this.socket = join(this.dir, "dev.sock");
    // stderr is piped too: an inherited pipe held by a stray child would keep the test runner waiting.
    this.child = spawn(process.execPath, [script, "--socket", this.socket, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    this.child.stderr?.on("data", (b: Buffer) => this.stderr.push(b.toString()));
    const kill = () => this.child.kill("SIGKILL");
    process.once("exit", kill);
    this.child.once("exit", () => process.off("exit", kill));
    const rl = createInterface({ input: this.child.stdout! });
    rl.on("line", (l) => {
      this.lines.push(l);
      this.#waiters = this.#waiters.filter((w) => (w.match(l) ? (w.resolve(l), false) : true));
    });
  }

  /** Resolves with the first line (already seen or future) that contains `text`. */
  line(text: string): Promise<string> {
    const seen = this.lines.find((l) => l.includes(text));
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve) => this.#waiters.push({ match: (l) => l.includes(text), resolve }));
  }

  /** Resolves with the first line printed from now on that contains `text`. */
  next(text: string): Promise<string> {
    return new Promise((resolve) => this.#waiters.push({ match: (l) => l.includes(text), resolve }));
  }

  /** Open fds of the device process. */
  fdCount(): number {
    return readdirSync(`/proc/${this.child.pid}/fd`).length;
  }

  /** Stop the device process and remove its directory. */
  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const exited = new Promise((r) => this.child.once("exit", r));
      this.child.kill("SIGTERM");
      await exited;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Request/reply over a raw endpoint, with wire's codecs. */
export class ScriptedFrontend {
  readonly ep: Endpoint;
  readonly dialect: Dialect;

  constructor(ep: Endpoint, dialect: Dialect = UPSTREAM) {
    this.ep = ep;
    this.dialect = dialect;
  }

  static async connect(path: string, dialect: Dialect = UPSTREAM): Promise<ScriptedFrontend> {
    return new ScriptedFrontend(await connect(path, { retry: { attempts: 100, delayMs: 20 } }), dialect);
  }

  /** Send `name` with `value` (flags 0x1, or 0x9 with `needReply`). */
  async send(name: FrontendRequestName, value: unknown, opts: { needReply?: boolean; fds?: readonly number[] } = {}): Promise<void> {
    const frame = encodeMessage("frontend", name, opts.needReply === true ? 0x9 : 0x1, value as never, this.dialect);
    await this.ep.send(FrontendRequest[name], opts.needReply === true ? 0x9 : 0x1, frame.subarray(HEADER_SIZE), opts.fds ?? []);
  }

  /** Receive one reply and decode it as the reply to `name`. */
  async reply(name: FrontendRequestName): Promise<{ value: unknown; msg: ReceivedMessage }> {
    const msg = await this.ep.recv();
    if (msg.request !== FrontendRequest[name]) throw new Error(`reply for ${msg.request}, expected ${name}`);
    return { value: decodeReply("frontend", msg.frame, this.dialect).value, msg };
  }

  /** Send `name` and return the decoded reply (always-replied requests). */
  async get(name: FrontendRequestName, value: unknown = undefined): Promise<unknown> {
    await this.send(name, value);
    return (await this.reply(name)).value;
  }

  /** Send `name` with NEED_REPLY and return the u64 ack status. */
  async ack(name: FrontendRequestName, value: unknown = undefined, fds: readonly number[] = []): Promise<bigint> {
    await this.send(name, value, { needReply: true, fds });
    return (await this.reply(name)).value as bigint;
  }

  close(): void {
    this.ep.close();
  }
}
