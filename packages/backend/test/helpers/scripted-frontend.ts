/**
 * A hand-played front-end for the back-end tests: raw frames over a real socket to a device running
 * in another process, guest RAM from memfd, and the virtqueue driver side as the guest.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import assert from "node:assert/strict";
import { guestAddress, type GuestRam } from "@vhostkit/regions";
import { connect, Endpoint, EventFd, socketPair, type EndpointOptions, type ReceivedMessage } from "@vhostkit/transport";
import { SplitDriver } from "@vhostkit/virtqueue/driver";
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

  /** `stop()`, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
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

  /**
   * Connects to the listener at `path`, which must exist already: a device process's `listening`
   * line ({@link DeviceProcess.line}) or an in-process `serve` says so. One attempt, no retries.
   */
  static async connect(path: string, dialect: Dialect = UPSTREAM): Promise<ScriptedFrontend> {
    return new ScriptedFrontend(await connect(path), dialect);
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

  /** `close()`, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }
}

/** SET_BACKEND_REQ_FD over a fresh socketpair (acked 0): returns our end of the back-end channel. */
export async function backendChannel(fe: ScriptedFrontend, options: EndpointOptions = {}): Promise<Endpoint> {
  const [mine, theirs] = socketPair();
  const channel = new Endpoint(mine, options);
  assert.equal(await fe.ack("SET_BACKEND_REQ_FD", undefined, [theirs.fd]), 0n);
  theirs.close();
  return channel;
}

/** Vring 0 as the guest sees it: its driver side and its call and kick eventfds. */
export interface StartedRing extends Disposable {
  readonly driver: SplitDriver;
  readonly call: EventFd;
  readonly kick: EventFd;
  /** Closes the call and kick eventfds (`using ring = await startRing(…)`). */
  close(): void;
}

/**
 * Vring 0 of `size` entries at guest addresses 0x1000 (desc), 0x1100 (avail), 0x1200 (used) of
 * `ram`, set up and started on the device (NUM, ADDR, CALL, KICK, ENABLE, each acked 0).
 * @returns the driver side and the call and kick eventfds; the caller closes them (`close()` or
 *   `using`). A failed set-up closes them itself.
 */
export async function startRing(fe: ScriptedFrontend, ram: GuestRam, size = 16): Promise<StartedRing> {
  const addresses = { desc: 0x1000n, avail: 0x1100n, used: 0x1200n };
  const driver = new SplitDriver({ size, memory: ram, addresses, reset: true });
  const u = (a: bigint) => ram.userAddressOf(guestAddress(a));
  const call = EventFd.create();
  const kick = EventFd.create();
  const close = (): void => {
    call.close();
    kick.close();
  };
  try {
    assert.equal(await fe.ack("SET_VRING_NUM", { index: 0, num: size }), 0n);
    assert.equal(
      await fe.ack("SET_VRING_ADDR", {
        index: 0,
        flags: 0,
        descAddr: u(addresses.desc),
        usedAddr: u(addresses.used),
        availAddr: u(addresses.avail),
        logAddr: 0n,
      }),
      0n,
    );
    assert.equal(await fe.ack("SET_VRING_CALL", { index: 0, noFd: false }, [call.fd]), 0n);
    assert.equal(await fe.ack("SET_VRING_KICK", { index: 0, noFd: false }, [kick.fd]), 0n);
    assert.equal(await fe.ack("SET_VRING_ENABLE", { index: 0, num: 1 }), 0n);
  } catch (err) {
    close();
    throw err;
  }
  return { driver, call, kick, close, [Symbol.dispose]: close };
}
