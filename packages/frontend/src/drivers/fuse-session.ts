/**
 * One FUSE session over virtio-fs queues (docs/virtio-fs.md#queues): request/reply framing with
 * unique ids, the hiprio queue for FORGET, FUSE errors as {@link FrontendError}s a person can act
 * on, and the lookup counts the server keeps for this session.
 * @module
 */
import { describeErrno, errnoName } from "@vhostkit/transport";
import { FrontendError } from "../errors.js";
import type { DriverQueue } from "../driver-queue.js";
import { decodeOutHeader, encodeForgetIn, encodeInHeader, FuseOpcode, OUT_HEADER_SIZE } from "./fuse-protocol.js";

/** errno values that mean "the server does not implement this" rather than an I/O failure. */
const UNSUPPORTED = new Set([38 /* ENOSYS */, 95 /* EOPNOTSUPP */]);

/** Largest errno a server may send (the kernel's MAX_ERRNO). */
const MAX_ERRNO = 4095;

/** Opcode names for messages, from {@link FuseOpcode}. */
const OPCODE_NAMES = new Map<number, string>(Object.entries(FuseOpcode).map(([k, v]) => [v, k]));

/** One request: the opcode, the node it names, its argument buffers and the largest reply body. */
export interface FuseRequest {
  readonly opcode: number;
  /** Node id the request is about (0 for INIT and DESTROY). */
  readonly nodeid: bigint;
  /** Argument structures and names, each its own descriptor, in order. */
  readonly args: readonly Uint8Array[];
  /** Capacity of the reply body after the 16-byte header, bytes (0: header only). */
  readonly replyMax: number;
  /** What the request is about, for messages (a path or a name). */
  readonly subject: string;
}

/**
 * The FUSE request/reply layer of a virtio-fs device: queue 0 is hiprio (FORGET, no reply), the
 * request queue carries everything else. Each request is one descriptor chain: the in header and
 * each argument as device-readable buffers, then the out header and the reply body as
 * device-writable ones, as the Linux driver lays them out.
 */
export class FuseSession {
  readonly #hiprio: DriverQueue;
  readonly #requests: DriverQueue;
  #unique = 0n;
  /** Lookups the server counts per node id (LOOKUP, CREATE and READDIRPLUS entries), to FORGET on close. */
  readonly #lookups = new Map<bigint, bigint>();
  readonly #uid: number;
  readonly #gid: number;

  /** `hiprio` and `requests` are started queues of the device (borrowed). */
  constructor(hiprio: DriverQueue, requests: DriverQueue) {
    this.#hiprio = hiprio;
    this.#requests = requests;
    this.#uid = process.getuid?.() ?? 0;
    this.#gid = process.getgid?.() ?? 0;
  }

  #header(opcode: number, nodeid: bigint, argsLen: number): Uint8Array {
    this.#unique += 2n; // even: the kernel keeps odd uniques for INTERRUPT
    return encodeInHeader({ opcode, unique: this.#unique, nodeid, uid: this.#uid, gid: this.#gid, pid: process.pid }, argsLen);
  }

  /**
   * Sends one request and returns the reply body (without the header), checked: the used length
   * covers the header, the header's length and unique match, and a non-zero error becomes a
   * {@link FrontendError}: `UNSUPPORTED` for ENOSYS/EOPNOTSUPP, `IO_ERROR` otherwise, with the
   * errno name in `detail.actual` and a message such as
   * `fs lookup "a b/c": no such file or directory (ENOENT)`.
   * @throws FrontendError `PROTOCOL` for a malformed reply, the codes above, and {@link DriverQueue.transfer}'s.
   */
  async call(r: FuseRequest): Promise<Uint8Array> {
    const name = opcodeName(r.opcode);
    const argsLen = r.args.reduce((n, a) => n + a.byteLength, 0);
    const header = this.#header(r.opcode, r.nodeid, argsLen);
    const unique = new DataView(header.buffer).getBigUint64(8, true);
    const res = await this.#requests.transfer([header, ...r.args], r.replyMax > 0 ? [OUT_HEADER_SIZE, r.replyMax] : [OUT_HEADER_SIZE]);
    const what = name.toLowerCase();
    if (res.len < OUT_HEADER_SIZE || res.len > OUT_HEADER_SIZE + r.replyMax) {
      throw new FrontendError("PROTOCOL", `fs ${what}: used length ${res.len} is not a reply of 16 to ${OUT_HEADER_SIZE + r.replyMax} bytes`, {
        request: `FUSE_${name}`,
        actual: res.len,
      });
    }
    const out = decodeOutHeader(res.buffers[0] as Uint8Array, what);
    if (out.unique !== unique)
      throw new FrontendError("PROTOCOL", `fs ${what}: reply for unique ${out.unique}, expected ${unique}`, {
        request: `FUSE_${name}`,
        expected: unique,
        actual: out.unique,
      });
    if (out.len !== res.len)
      throw new FrontendError("PROTOCOL", `fs ${what}: reply header says ${out.len} bytes, the device wrote ${res.len}`, {
        request: `FUSE_${name}`,
        expected: res.len,
        actual: out.len,
      });
    if (out.error > 0 || out.error < -MAX_ERRNO)
      throw new FrontendError("PROTOCOL", `fs ${what}: error field ${out.error} is not 0 or a negative errno`, { request: `FUSE_${name}`, actual: out.error });
    if (out.error < 0) throw fuseError(name, r.subject, -out.error);
    return (res.buffers[1] ?? new Uint8Array(0)).subarray(0, res.len - OUT_HEADER_SIZE);
  }

  /** Records one more lookup of `nodeid` the server now counts (0 and the root are not counted). */
  counted(nodeid: bigint): void {
    if (nodeid === 0n || nodeid === 1n) return;
    this.#lookups.set(nodeid, (this.#lookups.get(nodeid) ?? 0n) + 1n);
  }

  /**
   * FORGET on the hiprio queue (no reply) for every node this session looked up, so that the
   * server can drop its references; failures are ignored (the server forgets on DESTROY anyway).
   */
  async forgetAll(): Promise<void> {
    const all = [...this.#lookups];
    this.#lookups.clear();
    await Promise.all(
      all.map(([nodeid, n]) => {
        const arg = encodeForgetIn(n);
        return this.#hiprio.transfer([this.#header(FuseOpcode.FORGET, nodeid, arg.byteLength), arg], []).catch(() => undefined);
      }),
    );
  }

  /**
   * Takes over `from`'s lookup counts and request numbering (after its server's state moved to this
   * session's server, docs/virtio-fs.md#migration): they are this session's to FORGET now, not `from`'s.
   */
  adopt(from: FuseSession): void {
    for (const [nodeid, n] of from.#lookups) this.#lookups.set(nodeid, (this.#lookups.get(nodeid) ?? 0n) + n);
    from.#lookups.clear();
    if (from.#unique > this.#unique) this.#unique = from.#unique;
  }

  /** Node ids with outstanding lookups (for tests and diagnostics). */
  get lookedUp(): number {
    return this.#lookups.size;
  }
}

/** `FUSE_` name of an opcode, or `OPCODE_N`. */
export function opcodeName(opcode: number): string {
  return OPCODE_NAMES.get(opcode) ?? `OPCODE_${opcode}`;
}

/**
 * A FUSE error reply as a {@link FrontendError}: `fs lookup "dir/x": no such file or directory (ENOENT)`.
 * `UNSUPPORTED` for ENOSYS/EOPNOTSUPP, else `IO_ERROR`; `detail.actual` is the errno name.
 */
export function fuseError(opcodeName: string, subject: string, errno: number): FrontendError {
  const code = UNSUPPORTED.has(errno) ? "UNSUPPORTED" : "IO_ERROR";
  const about = subject === "" ? "" : ` ${JSON.stringify(subject)}`;
  return new FrontendError(code, `fs ${opcodeName.toLowerCase()}${about}: ${describeErrno(errno)}`, {
    request: `FUSE_${opcodeName}`,
    actual: errnoName(errno),
  });
}
