/**
 * virtio-fs driver (docs/virtio-fs.md#device; device id 26): FUSE over the hiprio and request
 * queues, with path-level operations for `vhost-user-device fs`.
 * @module
 */
import { ProtocolFeature, VirtioFeature } from "@vhostkit/wire";
import { FrontendError, isFrontendError } from "../errors.js";
import type { Device } from "../device.js";
import {
  ATTR_OUT_SIZE,
  decodeAttrOut,
  decodeDirentplus,
  decodeEntryOut,
  decodeInitOut,
  decodeOpenOut,
  decodeWriteOut,
  encodeCreateIn,
  encodeGetattrIn,
  encodeInitIn,
  encodeName,
  encodeOpenIn,
  encodeReadIn,
  encodeReleaseIn,
  encodeWriteIn,
  ENTRY_OUT_SIZE,
  FuseInitFlag,
  FuseOpcode,
  FUSE_ROOT_ID,
  OPEN_OUT_SIZE,
  type FuseAttr,
  type FuseDirEntry,
  type FuseEntry,
  type FuseInit,
} from "./fuse-protocol.js";
import { FuseSession } from "./fuse-session.js";

/** open(2) flags used by the driver (Linux values). */
const O_RDONLY = 0;
const O_WRONLY = 1;
const O_CREAT = 0o100;
const O_EXCL = 0o200;
const O_TRUNC = 0o1000;
const O_DIRECTORY = 0o200000;

/** `st_mode` file type mask and the directory type. */
const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;

/** READDIRPLUS reply capacity per request, bytes. */
const DIR_CHUNK = 64 * 1024;
/** Cap on the entries of one directory listing (a server that never ends a directory is refused). */
const MAX_DIR_ENTRIES = 1_000_000;
/** Requests a large READ or WRITE keeps in flight at once. */
const PIPELINE = 4;

/** Decoded virtio-fs config space (docs/virtio-fs.md#virtio-fs-configuration-space). */
export interface FsConfig {
  /** The file system tag (UTF-8, NUL padding removed). */
  readonly tag: string;
  /** Number of request queues (queues 1..n). */
  readonly numRequestQueues: number;
}

/**
 * Decodes the virtio-fs config space: a 36-byte tag and a u32 count of request queues.
 * @throws FrontendError `PROTOCOL` when fewer than 40 bytes are given.
 */
export function decodeFsConfig(bytes: Uint8Array): FsConfig {
  if (bytes.byteLength < 40)
    throw new FrontendError("PROTOCOL", `virtio-fs config of ${bytes.byteLength} bytes is shorter than 40`, {
      request: "GET_CONFIG",
      expected: 40,
      actual: bytes.byteLength,
    });
  const tag = bytes.subarray(0, 36);
  const end = tag.indexOf(0);
  return {
    tag: new TextDecoder().decode(tag.subarray(0, end < 0 ? 36 : end)),
    numRequestQueues: new DataView(bytes.buffer, bytes.byteOffset, 40).getUint32(36, true),
  };
}

/** A file {@link FsDriver.open} opened: its node id and FUSE file handle, as the server gave them. */
export interface FsOpenFile {
  /** The path it was opened by (for messages). */
  readonly path: string;
  /** FUSE node id. */
  readonly nodeid: bigint;
  /** FUSE file handle (OPEN's `fh`). */
  readonly fh: bigint;
}

/** A directory entry as {@link FsDriver.list} returns it. */
export interface FsListEntry {
  /** File name. */
  readonly name: string;
  /** `d_type` (8 regular file, 4 directory, 10 symbolic link). */
  readonly type: number;
  /** Attributes, when the server looked the entry up (READDIRPLUS). */
  readonly attr: FuseAttr | undefined;
}

/** Splits a path into its components (empty and `.` components dropped). */
function components(path: string): string[] {
  return path.split("/").filter((c) => c !== "" && c !== ".");
}

/**
 * A virtio-fs driver on a {@link Device}: starts the hiprio queue (0) and the first request queue
 * (1), sends FUSE_INIT, then offers path operations (`list`, `readFile`, `stat`, `writeFile`,
 * `unlink`) built from LOOKUP, GETATTR, OPENDIR, READDIRPLUS, RELEASEDIR, OPEN, READ, CREATE,
 * WRITE, RELEASE and UNLINK. Paths are relative to the shared directory's root; every node id a
 * lookup returned is forgotten (FORGET) and the session ended (DESTROY) by {@link FsDriver.close}.
 */
export class FsDriver {
  /** The device. */
  readonly device: Device;
  /** Negotiated FUSE_INIT parameters. */
  readonly init: FuseInit;
  /** Decoded config space, when the back-end offered CONFIG. */
  readonly config: FsConfig | undefined;
  readonly #session: FuseSession;
  readonly #chunk: number;
  #closed = false;

  private constructor(device: Device, session: FuseSession, init: FuseInit, chunk: number) {
    this.device = device;
    this.#session = session;
    this.init = init;
    this.#chunk = chunk;
    const c = device.info.config;
    this.config = c !== undefined && c.byteLength >= 40 ? decodeFsConfig(c) : undefined;
  }

  /**
   * Starts queues 0 (hiprio) and 1 (requests) and sends FUSE_INIT.
   * @param options.maxRequestBytes - largest READ or WRITE payload per request (default 128 KiB;
   *   lowered to the server's `max_write` and `max_pages`).
   * @throws FrontendError `NEGOTIATION` (fewer than 2 queues, FUSE major other than 7), the codes of
   *   {@link Device.start}, or the FUSE_INIT error.
   */
  static async attach(device: Device, options: { readonly maxRequestBytes?: number; readonly queueSize?: number } = {}): Promise<FsDriver> {
    const session = await FsDriver.#startQueues(device, options.queueSize);
    const body = await session.call({
      opcode: FuseOpcode.INIT,
      nodeid: 0n,
      args: [encodeInitIn(FuseInitFlag.BIG_WRITES | FuseInitFlag.DO_READDIRPLUS | FuseInitFlag.MAX_PAGES, 128 * 1024)],
      replyMax: 64,
      subject: "",
    });
    const init = decodeInitOut(body);
    let chunk = options.maxRequestBytes ?? 128 * 1024;
    if (!Number.isInteger(chunk) || chunk < 4096) throw new FrontendError("BAD_ARGUMENT", `max request size ${chunk} is below 4096 bytes`, { actual: chunk });
    if (init.maxWrite >= 4096) chunk = Math.min(chunk, init.maxWrite);
    if (init.maxPages !== undefined) chunk = Math.min(chunk, Math.max(1, init.maxPages) * 4096);
    return new FsDriver(device, session, init, chunk);
  }

  /**
   * Continues `previous`'s FUSE session on `device`, whose back-end loaded the state of
   * `previous`'s back-end (`loadDeviceState`, docs/virtio-fs.md#migration): starts the queues and
   * sends no FUSE_INIT (the session is initialised already); node ids and open files of `previous`
   * stay valid, and its lookups are this driver's to FORGET now. `previous` is closed without a
   * word to its back-end.
   * @throws FrontendError `NEGOTIATION` (fewer than 2 queues), the codes of {@link Device.start}.
   */
  static async resume(device: Device, previous: FsDriver, options: { readonly queueSize?: number } = {}): Promise<FsDriver> {
    const session = await FsDriver.#startQueues(device, options.queueSize);
    session.adopt(previous.#session);
    previous.#closed = true;
    return new FsDriver(device, session, previous.init, previous.#chunk);
  }

  /** Queues 0 and 1 started on `device`, and a FUSE session over them. */
  static async #startQueues(device: Device, queueSize: number | undefined): Promise<FuseSession> {
    const info = device.info;
    // Without MQ the back-end does not say how many queues it has (queueNum reads 1): try two.
    const mq = (info.ackedProtocolFeatures & ProtocolFeature.MQ) !== 0n;
    if (mq && info.queueNum < 2)
      throw new FrontendError("NEGOTIATION", `virtio-fs needs 2 queues (hiprio and one request queue), the back-end has ${info.queueNum}`, {
        request: "GET_QUEUE_NUM",
        expected: 2,
        actual: info.queueNum,
      });
    const [hiprio, requests] = await device.start({ features: VirtioFeature.EVENT_IDX, queues: [0, 1], ...(queueSize === undefined ? {} : { queueSize }) });
    return new FuseSession(hiprio as NonNullable<typeof hiprio>, requests as NonNullable<typeof requests>);
  }

  /** Largest READ or WRITE payload per request after negotiation, bytes. */
  get requestBytes(): number {
    return this.#chunk;
  }

  async #lookup(parent: bigint, name: string, subject: string): Promise<FuseEntry> {
    const body = await this.#session.call({ opcode: FuseOpcode.LOOKUP, nodeid: parent, args: [encodeName(name)], replyMax: ENTRY_OUT_SIZE, subject });
    const e = decodeEntryOut(body, "lookup");
    if (e.nodeid === 0n)
      throw new FrontendError("IO_ERROR", `fs lookup ${JSON.stringify(subject)}: no such file or directory (ENOENT)`, {
        request: "FUSE_LOOKUP",
        actual: "ENOENT",
      });
    this.#session.counted(e.nodeid);
    return e;
  }

  /** The node id of `path` (the root for `""` or `/`), looking up each component. */
  async #walk(path: string): Promise<bigint> {
    let node = FUSE_ROOT_ID;
    const parts = components(path);
    for (let i = 0; i < parts.length; i++) node = (await this.#lookup(node, parts[i] as string, parts.slice(0, i + 1).join("/"))).nodeid;
    return node;
  }

  /** The parent's node id and the last component of `path`. @throws FrontendError `BAD_ARGUMENT` for the root. */
  async #parentOf(path: string): Promise<{ readonly parent: bigint; readonly name: string }> {
    const parts = components(path);
    const name = parts.pop();
    if (name === undefined) throw new FrontendError("BAD_ARGUMENT", `fs: "${path}" names the root directory, not a file`, { actual: path });
    return { parent: await this.#walk(parts.join("/")), name };
  }

  /**
   * GETATTR of `path` (after looking up each component).
   * @throws FrontendError `IO_ERROR` (ENOENT, EACCES, ...), `PROTOCOL`.
   */
  async stat(path: string): Promise<FuseAttr> {
    const node = await this.#walk(path);
    const body = await this.#session.call({ opcode: FuseOpcode.GETATTR, nodeid: node, args: [encodeGetattrIn()], replyMax: ATTR_OUT_SIZE, subject: path });
    return decodeAttrOut(body);
  }

  /**
   * The entries of directory `path` (without `.` and `..`): OPENDIR, READDIRPLUS until an empty
   * reply, RELEASEDIR.
   * @throws FrontendError `IO_ERROR` (ENOTDIR, ENOENT, ...), `PROTOCOL` (a malformed or endless listing).
   */
  async list(path: string): Promise<FsListEntry[]> {
    const node = await this.#walk(path);
    const fh = decodeOpenOut(
      await this.#session.call({
        opcode: FuseOpcode.OPENDIR,
        nodeid: node,
        args: [encodeOpenIn(O_RDONLY | O_DIRECTORY)],
        replyMax: OPEN_OUT_SIZE,
        subject: path,
      }),
      "opendir",
    );
    const out: FsListEntry[] = [];
    try {
      let offset = 0n;
      for (;;) {
        const body = await this.#session.call({
          opcode: FuseOpcode.READDIRPLUS,
          nodeid: node,
          args: [encodeReadIn(fh, offset, DIR_CHUNK)],
          replyMax: DIR_CHUNK,
          subject: path,
        });
        const entries: FuseDirEntry[] = decodeDirentplus(body);
        if (entries.length === 0) break;
        for (const e of entries) {
          const dot = e.name === "." || e.name === "..";
          if (!dot) this.#session.counted(e.entry.nodeid); // the server counts a lookup for each real entry
          if (!dot) out.push({ name: e.name, type: e.type, attr: e.entry.nodeid === 0n ? undefined : e.entry.attr });
        }
        if (out.length > MAX_DIR_ENTRIES)
          throw new FrontendError("PROTOCOL", `fs readdirplus ${JSON.stringify(path)}: more than ${MAX_DIR_ENTRIES} entries`, {
            request: "FUSE_READDIRPLUS",
            expected: MAX_DIR_ENTRIES,
          });
        offset = (entries[entries.length - 1] as FuseDirEntry).off;
      }
    } finally {
      await this.#session
        .call({ opcode: FuseOpcode.RELEASEDIR, nodeid: node, args: [encodeReleaseIn(fh, O_RDONLY | O_DIRECTORY)], replyMax: 0, subject: path })
        .catch(() => undefined);
    }
    return out;
  }

  /**
   * The whole content of file `path`: OPEN read-only, READs of {@link FsDriver.requestBytes} (a
   * few in flight) until a short read, RELEASE.
   * @throws FrontendError `IO_ERROR` (EISDIR, ENOENT, EACCES, ...), `PROTOCOL` (a read longer than asked).
   */
  async readFile(path: string): Promise<Uint8Array> {
    const node = await this.#walk(path);
    const fh = decodeOpenOut(
      await this.#session.call({ opcode: FuseOpcode.OPEN, nodeid: node, args: [encodeOpenIn(O_RDONLY)], replyMax: OPEN_OUT_SIZE, subject: path }),
      "open",
    );
    const pieces: Uint8Array[] = [];
    let total = 0;
    try {
      for (let offset = 0n, eof = false; !eof; ) {
        const batch: Promise<Uint8Array>[] = [];
        for (let i = 0; i < PIPELINE; i++, offset += BigInt(this.#chunk)) {
          batch.push(
            this.#session.call({ opcode: FuseOpcode.READ, nodeid: node, args: [encodeReadIn(fh, offset, this.#chunk)], replyMax: this.#chunk, subject: path }),
          );
        }
        for (const data of await Promise.all(batch)) {
          if (eof) {
            if (data.byteLength > 0) throw new FrontendError("PROTOCOL", `fs read ${JSON.stringify(path)}: data after a short read`, { request: "FUSE_READ" });
            continue;
          }
          pieces.push(data.slice());
          total += data.byteLength;
          if (data.byteLength < this.#chunk) eof = true;
        }
      }
    } finally {
      await this.#release(node, fh, O_RDONLY, path);
    }
    const out = new Uint8Array(total);
    let o = 0;
    for (const p of pieces) {
      out.set(p, o);
      o += p.byteLength;
    }
    return out;
  }

  /**
   * Opens file `path` read-only and keeps it open (LOOKUP of each component, OPEN): the handle of
   * {@link FsDriver.read}, valid until {@link FsDriver.release}, also across a migration of the
   * session ({@link FsDriver.resume}).
   * @throws FrontendError `IO_ERROR` (ENOENT, EISDIR, EACCES, ...), `PROTOCOL`.
   */
  async open(path: string): Promise<FsOpenFile> {
    const nodeid = await this.#walk(path);
    const body = await this.#session.call({ opcode: FuseOpcode.OPEN, nodeid, args: [encodeOpenIn(O_RDONLY)], replyMax: OPEN_OUT_SIZE, subject: path });
    return { path, nodeid, fh: decodeOpenOut(body, "open") };
  }

  /**
   * One READ of at most `size` bytes (at most {@link FsDriver.requestBytes}) at `offset` of an open file.
   * @returns the bytes read: fewer than `size` at the end of the file.
   * @throws FrontendError `BAD_ARGUMENT` (size), `IO_ERROR` (EBADF for a handle the server does not know, ...), `PROTOCOL`.
   */
  async read(file: FsOpenFile, offset: bigint, size: number): Promise<Uint8Array> {
    if (!Number.isInteger(size) || size < 1 || size > this.#chunk)
      throw new FrontendError("BAD_ARGUMENT", `fs read: size ${size} not in 1..${this.#chunk}`, { actual: size, expected: this.#chunk });
    const data = await this.#session.call({
      opcode: FuseOpcode.READ,
      nodeid: file.nodeid,
      args: [encodeReadIn(file.fh, offset, size)],
      replyMax: size,
      subject: file.path,
    });
    return data.slice();
  }

  /** RELEASE of an open file; errors of a dead back-end are ignored. */
  release(file: FsOpenFile): Promise<void> {
    return this.#release(file.nodeid, file.fh, O_RDONLY, file.path);
  }

  /**
   * Creates or truncates file `path` and writes `data` in WRITEs of {@link FsDriver.requestBytes},
   * a few in flight, then RELEASE. As the Linux driver does, it looks the name up first: an
   * existing file is opened with O_TRUNC (OPEN), a missing one created (CREATE, mode 0644) —
   * virtiofsd 7.2 aborts on a CREATE of a name that exists (docs/virtio-fs.md#observed-servers).
   * @throws FrontendError `IO_ERROR` (ENOENT parent, EISDIR, EACCES, ENOSPC, EROFS, ...), `PROTOCOL` (a short write).
   */
  async writeFile(path: string, data: Uint8Array, mode = 0o644): Promise<void> {
    const { parent, name } = await this.#parentOf(path);
    const flags = O_WRONLY | O_TRUNC;
    const existing = await this.#lookup(parent, name, path).catch((e: unknown) => {
      if (isFrontendError(e) && e.detail.actual === "ENOENT") return undefined;
      throw e;
    });
    let node: bigint;
    let fh: bigint;
    if (existing !== undefined) {
      if (FsDriver.isDirectory(existing.attr))
        throw new FrontendError("IO_ERROR", `fs open ${JSON.stringify(path)}: is a directory (EISDIR)`, { request: "FUSE_OPEN", actual: "EISDIR" });
      node = existing.nodeid;
      fh = decodeOpenOut(
        await this.#session.call({ opcode: FuseOpcode.OPEN, nodeid: node, args: [encodeOpenIn(flags)], replyMax: OPEN_OUT_SIZE, subject: path }),
        "open",
      );
    } else {
      const body = await this.#session.call({
        opcode: FuseOpcode.CREATE,
        nodeid: parent,
        args: [encodeCreateIn(flags | O_CREAT | O_EXCL, 0o100000 | (mode & 0o7777), 0o022), encodeName(name)],
        replyMax: ENTRY_OUT_SIZE + OPEN_OUT_SIZE,
        subject: path,
      });
      const entry = decodeEntryOut(body, "create");
      this.#session.counted(entry.nodeid);
      node = entry.nodeid;
      fh = decodeOpenOut(body, "create", ENTRY_OUT_SIZE);
    }
    try {
      const writes: Promise<void>[] = [];
      for (let off = 0; off < data.byteLength; off += this.#chunk) {
        const piece = data.subarray(off, Math.min(off + this.#chunk, data.byteLength));
        writes.push(this.#write(node, fh, BigInt(off), piece, path));
        if (writes.length === PIPELINE) await Promise.all(writes.splice(0));
      }
      await Promise.all(writes);
    } finally {
      await this.#release(node, fh, flags, path);
    }
  }

  async #write(node: bigint, fh: bigint, offset: bigint, piece: Uint8Array, path: string): Promise<void> {
    const n = decodeWriteOut(
      await this.#session.call({
        opcode: FuseOpcode.WRITE,
        nodeid: node,
        args: [encodeWriteIn(fh, offset, piece.byteLength), piece],
        replyMax: 8,
        subject: path,
      }),
    );
    if (n !== piece.byteLength)
      throw new FrontendError("IO_ERROR", `fs write ${JSON.stringify(path)}: ${n} of ${piece.byteLength} bytes written at offset ${offset}`, {
        request: "FUSE_WRITE",
        expected: piece.byteLength,
        actual: n,
      });
  }

  async #release(node: bigint, fh: bigint, flags: number, path: string): Promise<void> {
    await this.#session
      .call({ opcode: FuseOpcode.RELEASE, nodeid: node, args: [encodeReleaseIn(fh, flags)], replyMax: 0, subject: path })
      .catch(() => undefined);
  }

  /**
   * Removes file `path`: LOOKUP, then UNLINK in its parent. The lookup is what the Linux driver
   * does too (a dentry exists first); virtiofsd 7.2 answers EIO to an UNLINK of a name it has not
   * looked up in this session (docs/virtio-fs.md#observed-servers).
   * @throws FrontendError `IO_ERROR` (ENOENT, EISDIR, EACCES, ...).
   */
  async unlink(path: string): Promise<void> {
    const { parent, name } = await this.#parentOf(path);
    await this.#lookup(parent, name, path);
    await this.#session.call({ opcode: FuseOpcode.UNLINK, nodeid: parent, args: [encodeName(name)], replyMax: 0, subject: path });
  }

  /** True when `attr` is a directory. */
  static isDirectory(attr: FuseAttr): boolean {
    return (attr.mode & S_IFMT) === S_IFDIR;
  }

  /**
   * Ends the session: FORGET for every node looked up (hiprio queue), then DESTROY. The device
   * stays open (close it with {@link Device.close}). Errors of a dead back-end are ignored. Idempotent.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#session.forgetAll();
    await this.#session.call({ opcode: FuseOpcode.DESTROY, nodeid: 0n, args: [], replyMax: 0, subject: "" }).catch(() => undefined);
  }
}
