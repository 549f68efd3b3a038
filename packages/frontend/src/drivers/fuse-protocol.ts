/**
 * FUSE messages as virtio-fs carries them (docs/virtio-fs.md#fuse-messages):
 * opcodes, the request and reply headers, and bounds-checked codecs for the structures the
 * `FsDriver` uses. Everything is little-endian; every decoder checks the length it was given
 * before it reads, since the reply comes from an untrusted server.
 * @module
 */
import { FrontendError } from "../errors.js";

/** FUSE opcodes (`fuse_in_header.opcode`), spelled as in the Linux UAPI header. */
export const FuseOpcode = {
  LOOKUP: 1,
  FORGET: 2,
  GETATTR: 3,
  UNLINK: 10,
  OPEN: 14,
  READ: 15,
  WRITE: 16,
  RELEASE: 18,
  INIT: 26,
  OPENDIR: 27,
  READDIR: 28,
  RELEASEDIR: 29,
  CREATE: 35,
  DESTROY: 38,
  READDIRPLUS: 44,
} as const;

/** `fuse_init_in.flags` bits the driver asks for. */
export const FuseInitFlag = {
  BIG_WRITES: 1 << 5,
  DO_READDIRPLUS: 1 << 13,
  MAX_PAGES: 1 << 22,
} as const;

/** The FUSE version the driver speaks: 7.31, the version virtio-fs first shipped with. */
export const FUSE_KERNEL_VERSION = 7;
/** Minor version of {@link FUSE_KERNEL_VERSION}. */
export const FUSE_KERNEL_MINOR_VERSION = 31;
/** Node id of the root directory. */
export const FUSE_ROOT_ID = 1n;
/** Size of `fuse_in_header` in bytes. */
export const IN_HEADER_SIZE = 40;
/** Size of `fuse_out_header` in bytes. */
export const OUT_HEADER_SIZE = 16;
/** Size of `fuse_entry_out` in bytes (node id, generation, validity, `fuse_attr`). */
export const ENTRY_OUT_SIZE = 128;
/** Size of `fuse_attr_out` in bytes. */
export const ATTR_OUT_SIZE = 104;
/** Size of `fuse_open_out` in bytes. */
export const OPEN_OUT_SIZE = 16;
/** Longest name component a FUSE server accepts (NAME_MAX), bytes. */
export const NAME_MAX = 255;

/** File attributes (`fuse_attr`). Times are seconds since the epoch plus nanoseconds. */
export interface FuseAttr {
  /** Inode number on the server's file system (u64). */
  readonly ino: bigint;
  /** Size in bytes (u64). */
  readonly size: bigint;
  /** 512-byte blocks allocated (u64). */
  readonly blocks: bigint;
  /** Last access, modification and status change: seconds (u64) and nanoseconds. */
  readonly atime: bigint;
  /** Modification time, seconds since the epoch. */
  readonly mtime: bigint;
  /** Status change time, seconds since the epoch. */
  readonly ctime: bigint;
  /** Nanoseconds of {@link FuseAttr.mtime}. */
  readonly mtimeNsec: number;
  /** `st_mode`: file type and permission bits. */
  readonly mode: number;
  /** Hard links. */
  readonly nlink: number;
  /** Owner user id. */
  readonly uid: number;
  /** Owner group id. */
  readonly gid: number;
  /** Device number of a device file. */
  readonly rdev: number;
  /** Preferred I/O size in bytes. */
  readonly blksize: number;
}

/** A looked-up node (`fuse_entry_out`): the id later requests name it by, and its attributes. */
export interface FuseEntry {
  /** Node id (u64); 0 means "no entry" (a negative lookup cached by the kernel). */
  readonly nodeid: bigint;
  /** Generation of the node id (u64). */
  readonly generation: bigint;
  /** Attributes at lookup time. */
  readonly attr: FuseAttr;
}

/** One directory entry of READDIRPLUS (`fuse_direntplus`). */
export interface FuseDirEntry {
  /** Name (UTF-8 decoded; invalid sequences become U+FFFD). */
  readonly name: string;
  /** Inode number. */
  readonly ino: bigint;
  /** Directory-stream cookie of the entry after this one (u64, opaque). */
  readonly off: bigint;
  /** `d_type` (DT_REG 8, DT_DIR 4, DT_LNK 10, ...). */
  readonly type: number;
  /** The entry as LOOKUP would return it (node id 0 for `.` and `..` and when the server skipped it). */
  readonly entry: FuseEntry;
}

/** Negotiated FUSE_INIT parameters (`fuse_init_out`). */
export interface FuseInit {
  /** Major version the server speaks (7). */
  readonly major: number;
  /** Minor version both sides use (the lower of the two). */
  readonly minor: number;
  /** Flags the server accepted. */
  readonly flags: number;
  /** Largest WRITE payload the server takes, bytes. */
  readonly maxWrite: number;
  /** Largest request in pages, when the server set MAX_PAGES (else `undefined`). */
  readonly maxPages: number | undefined;
}

const ENCODER = new TextEncoder();
const DECODER = new TextDecoder("utf-8", { fatal: false });

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

/** A zeroed structure of `size` bytes with its fields set by `fill`. */
function struct(size: number, fill: (v: DataView) => void): Uint8Array {
  const b = new Uint8Array(size);
  fill(view(b));
  return b;
}

function short(what: string, need: number, have: number): FrontendError {
  return new FrontendError("PROTOCOL", `fuse ${what}: reply of ${have} bytes is shorter than ${need}`, {
    request: `FUSE_${what.toUpperCase()}`,
    expected: need,
    actual: have,
  });
}

/** The fields of `fuse_in_header` a request sets (`len` is computed from the arguments). */
export interface InHeader {
  readonly opcode: number;
  readonly unique: bigint;
  readonly nodeid: bigint;
  readonly uid: number;
  readonly gid: number;
  readonly pid: number;
}

/** Encodes `fuse_in_header` for a request whose arguments total `argsLen` bytes. */
export function encodeInHeader(h: InHeader, argsLen: number): Uint8Array {
  return struct(IN_HEADER_SIZE, (v) => {
    v.setUint32(0, IN_HEADER_SIZE + argsLen, true);
    v.setUint32(4, h.opcode, true);
    v.setBigUint64(8, h.unique, true);
    v.setBigUint64(16, h.nodeid, true);
    v.setUint32(24, h.uid, true);
    v.setUint32(28, h.gid, true);
    v.setUint32(32, h.pid, true);
  });
}

/** The decoded `fuse_out_header`. */
export interface OutHeader {
  /** Total reply length including this header. */
  readonly len: number;
  /** 0 or a negative errno. */
  readonly error: number;
  /** The `unique` of the request answered. */
  readonly unique: bigint;
}

/** Decodes `fuse_out_header`. @throws FrontendError `PROTOCOL` when shorter than 16 bytes. */
export function decodeOutHeader(b: Uint8Array, what: string): OutHeader {
  if (b.byteLength < OUT_HEADER_SIZE) throw short(what, OUT_HEADER_SIZE, b.byteLength);
  const v = view(b);
  return { len: v.getUint32(0, true), error: v.getInt32(4, true), unique: v.getBigUint64(8, true) };
}

/** A name argument: UTF-8 bytes and a terminating NUL. @throws FrontendError `BAD_ARGUMENT` for an empty, too long, or slash/NUL-containing name. */
export function encodeName(name: string): Uint8Array {
  const bytes = ENCODER.encode(name);
  if (bytes.byteLength === 0 || bytes.byteLength > NAME_MAX || bytes.includes(0) || bytes.includes(0x2f)) {
    throw new FrontendError("BAD_ARGUMENT", `fs: "${name}" is not a file name (1 to ${NAME_MAX} bytes, no "/" or NUL)`, { actual: name });
  }
  const out = new Uint8Array(bytes.byteLength + 1);
  out.set(bytes);
  return out;
}

/** `fuse_init_in` (16 bytes: major, minor, max_readahead, flags). */
export function encodeInitIn(flags: number, maxReadahead: number): Uint8Array {
  return struct(16, (v) => {
    v.setUint32(0, FUSE_KERNEL_VERSION, true);
    v.setUint32(4, FUSE_KERNEL_MINOR_VERSION, true);
    v.setUint32(8, maxReadahead, true);
    v.setUint32(12, flags, true);
  });
}

/**
 * Decodes `fuse_init_out`: at least the 24 bytes of the 7.22 layout; `max_pages` when the reply has
 * the 7.28 fields and the server set MAX_PAGES.
 * @throws FrontendError `PROTOCOL` when shorter, `NEGOTIATION` for a major version other than 7.
 */
export function decodeInitOut(b: Uint8Array): FuseInit {
  if (b.byteLength < 24) throw short("init", 24, b.byteLength);
  const v = view(b);
  const major = v.getUint32(0, true);
  if (major !== FUSE_KERNEL_VERSION)
    throw new FrontendError("NEGOTIATION", `fuse init: the server speaks FUSE ${major}, this driver ${FUSE_KERNEL_VERSION}`, {
      request: "FUSE_INIT",
      expected: FUSE_KERNEL_VERSION,
      actual: major,
    });
  const flags = v.getUint32(12, true);
  const maxPages = b.byteLength >= 34 && (flags & FuseInitFlag.MAX_PAGES) !== 0 ? v.getUint16(32, true) : undefined;
  return { major, minor: v.getUint32(4, true), flags, maxWrite: v.getUint32(20, true), maxPages: maxPages === 0 ? undefined : maxPages };
}

/** Decodes the 88-byte `fuse_attr` at `off` of `v` (the caller checked the length). */
function attrAt(v: DataView, off: number): FuseAttr {
  return {
    ino: v.getBigUint64(off, true),
    size: v.getBigUint64(off + 8, true),
    blocks: v.getBigUint64(off + 16, true),
    atime: v.getBigUint64(off + 24, true),
    mtime: v.getBigUint64(off + 32, true),
    ctime: v.getBigUint64(off + 40, true),
    mtimeNsec: v.getUint32(off + 52, true),
    mode: v.getUint32(off + 60, true),
    nlink: v.getUint32(off + 64, true),
    uid: v.getUint32(off + 68, true),
    gid: v.getUint32(off + 72, true),
    rdev: v.getUint32(off + 76, true),
    blksize: v.getUint32(off + 80, true),
  };
}

/** Decodes `fuse_entry_out` at `off`. @throws FrontendError `PROTOCOL` when it does not fit. */
export function decodeEntryOut(b: Uint8Array, what: string, off = 0): FuseEntry {
  if (b.byteLength - off < ENTRY_OUT_SIZE) throw short(what, off + ENTRY_OUT_SIZE, b.byteLength);
  const v = view(b);
  return { nodeid: v.getBigUint64(off, true), generation: v.getBigUint64(off + 8, true), attr: attrAt(v, off + 40) };
}

/** Decodes `fuse_attr_out`. @throws FrontendError `PROTOCOL` when shorter than 104 bytes. */
export function decodeAttrOut(b: Uint8Array): FuseAttr {
  if (b.byteLength < ATTR_OUT_SIZE) throw short("getattr", ATTR_OUT_SIZE, b.byteLength);
  return attrAt(view(b), 16);
}

/** Decodes `fuse_open_out` at `off`: the file handle (u64). @throws FrontendError `PROTOCOL`. */
export function decodeOpenOut(b: Uint8Array, what: string, off = 0): bigint {
  if (b.byteLength - off < OPEN_OUT_SIZE) throw short(what, off + OPEN_OUT_SIZE, b.byteLength);
  return view(b).getBigUint64(off, true);
}

/** Decodes `fuse_write_out`: bytes written. @throws FrontendError `PROTOCOL`. */
export function decodeWriteOut(b: Uint8Array): number {
  if (b.byteLength < 8) throw short("write", 8, b.byteLength);
  return view(b).getUint32(0, true);
}

/** `fuse_getattr_in` without a file handle (16 bytes of zeros). */
export function encodeGetattrIn(): Uint8Array {
  return new Uint8Array(16);
}

/** `fuse_open_in`: open(2) flags. */
export function encodeOpenIn(flags: number): Uint8Array {
  return struct(8, (v) => v.setUint32(0, flags, true));
}

/** `fuse_create_in` (flags, mode, umask) followed by the name. */
export function encodeCreateIn(flags: number, mode: number, umask: number): Uint8Array {
  return struct(16, (v) => {
    v.setUint32(0, flags, true);
    v.setUint32(4, mode, true);
    v.setUint32(8, umask, true);
  });
}

/** `fuse_read_in` (also READDIRPLUS): file handle, offset, size. */
export function encodeReadIn(fh: bigint, offset: bigint, size: number): Uint8Array {
  return struct(40, (v) => {
    v.setBigUint64(0, fh, true);
    v.setBigUint64(8, offset, true);
    v.setUint32(16, size, true);
  });
}

/** `fuse_write_in`: file handle, offset, size of the data that follows. */
export function encodeWriteIn(fh: bigint, offset: bigint, size: number): Uint8Array {
  return encodeReadIn(fh, offset, size); // same layout: fh, offset, size, flags 0, lock_owner 0
}

/** `fuse_release_in` (RELEASE and RELEASEDIR): file handle and the open flags. */
export function encodeReleaseIn(fh: bigint, flags: number): Uint8Array {
  return struct(24, (v) => {
    v.setBigUint64(0, fh, true);
    v.setUint32(8, flags, true);
  });
}

/** `fuse_forget_in`: how many lookups of the node to drop. */
export function encodeForgetIn(nlookup: bigint): Uint8Array {
  return struct(8, (v) => v.setBigUint64(0, nlookup, true));
}

/** Size of the fixed part of `fuse_dirent` (ino, off, namelen, type). */
const DIRENT_SIZE = 24;

/**
 * Decodes a READDIRPLUS reply body: `fuse_direntplus` records (entry, dirent, name, padded to 8
 * bytes). Every length is checked against what is left; a record that does not fit, a zero or
 * over-long name, or a `/` or NUL inside a name is a protocol error.
 * @throws FrontendError `PROTOCOL`.
 */
export function decodeDirentplus(b: Uint8Array): FuseDirEntry[] {
  const v = view(b);
  const out: FuseDirEntry[] = [];
  let o = 0;
  while (o < b.byteLength) {
    const need = ENTRY_OUT_SIZE + DIRENT_SIZE;
    if (b.byteLength - o < need)
      throw new FrontendError("PROTOCOL", `fuse readdirplus: ${b.byteLength - o} bytes left at offset ${o}, an entry needs ${need}`, {
        request: "FUSE_READDIRPLUS",
        offset: o,
      });
    const entry = decodeEntryOut(b, "readdirplus", o);
    const d = o + ENTRY_OUT_SIZE;
    const namelen = v.getUint32(d + 16, true);
    if (namelen === 0 || namelen > 1024 || namelen > b.byteLength - d - DIRENT_SIZE) {
      throw new FrontendError("PROTOCOL", `fuse readdirplus: name length ${namelen} at offset ${o} does not fit the reply`, {
        request: "FUSE_READDIRPLUS",
        offset: o,
        actual: namelen,
      });
    }
    const nameBytes = b.subarray(d + DIRENT_SIZE, d + DIRENT_SIZE + namelen);
    if (nameBytes.includes(0) || nameBytes.includes(0x2f))
      throw new FrontendError("PROTOCOL", `fuse readdirplus: a name at offset ${o} contains "/" or NUL`, { request: "FUSE_READDIRPLUS", offset: o });
    out.push({ name: DECODER.decode(nameBytes), ino: v.getBigUint64(d, true), off: v.getBigUint64(d + 8, true), type: v.getUint32(d + 20, true), entry });
    o = d + ((DIRENT_SIZE + namelen + 7) & ~7);
  }
  return out;
}
