/**
 * Golden frames for every message of docs/protocol.md and docs/shmem.md in every dialect. Each payload is
 * written **by hand** from the layout tables (docs/protocol.md#payload-layouts, docs/shmem.md#dialects,
 * docs/shmem.md#region-query, docs/shmem.md#map-payload, docs/shmem.md#extension-wire-format) with
 * the little-endian hex helpers below, never with the codec under test. `write-golden.ts` turns the
 * cases into `fixtures/golden/<dialect>/<file>.hex`; `golden.test.ts` checks file = hand hex,
 * decode(file) = value and encode(value) = file, once per distinct encoding.
 */
import type { Channel, Dialect, DialectName } from "@vhostkit/wire";
import { Dialects } from "@vhostkit/wire";

/** Little-endian hex of an unsigned integer of `bytes` bytes (byte order reversed by hand). */
function le(v: number | bigint, bytes: number): string {
  const big = BigInt(v);
  if (big < 0n || big >= 1n << BigInt(8 * bytes)) throw new RangeError(`${v} does not fit ${bytes} bytes`);
  const be = big.toString(16).padStart(2 * bytes, "0");
  let out = "";
  for (let i = be.length - 2; i >= 0; i -= 2) out += be.slice(i, i + 2);
  return out;
}
const h8 = (v: number): string => le(v, 1);
const h16 = (v: number): string => le(v, 2);
const h32 = (v: number): string => le(v, 4);
const h64 = (v: bigint): string => le(v, 8);
const zeros = (n: number): string => "00".repeat(n);
const hexOf = (b: Uint8Array): string => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
const bytes = (hex: string): Uint8Array => Uint8Array.from(hex.match(/../gu) ?? [], (x) => parseInt(x, 16));

/** One golden frame. */
export interface GoldenCase {
  /** File stem inside the dialect directory. */
  readonly file: string;
  /** Channel the request id belongs to. */
  readonly channel: Channel;
  /** Request frame or reply frame. */
  readonly kind: "request" | "reply";
  /** Spec request name. */
  readonly name: string;
  /** Header flags. */
  readonly flags: number;
  /** Decoded payload value. */
  readonly value: unknown;
  /** Hand-written payload hex (lowercase). */
  readonly payload: string;
  /** Decode/encode the reply in postcopy mode. */
  readonly postcopy?: boolean;
}

const REQ = 0x1;
const NEED = 0x9;
const REP = 0x5;

const ids: Record<Channel, Record<string, number>> = {
  frontend: {
    GET_FEATURES: 1,
    SET_FEATURES: 2,
    SET_OWNER: 3,
    RESET_OWNER: 4,
    SET_MEM_TABLE: 5,
    SET_LOG_BASE: 6,
    SET_LOG_FD: 7,
    SET_VRING_NUM: 8,
    SET_VRING_ADDR: 9,
    SET_VRING_BASE: 10,
    GET_VRING_BASE: 11,
    SET_VRING_KICK: 12,
    SET_VRING_CALL: 13,
    SET_VRING_ERR: 14,
    GET_PROTOCOL_FEATURES: 15,
    SET_PROTOCOL_FEATURES: 16,
    GET_QUEUE_NUM: 17,
    SET_VRING_ENABLE: 18,
    SEND_RARP: 19,
    NET_SET_MTU: 20,
    SET_BACKEND_REQ_FD: 21,
    IOTLB_MSG: 22,
    SET_VRING_ENDIAN: 23,
    GET_CONFIG: 24,
    SET_CONFIG: 25,
    CREATE_CRYPTO_SESSION: 26,
    CLOSE_CRYPTO_SESSION: 27,
    POSTCOPY_ADVISE: 28,
    POSTCOPY_LISTEN: 29,
    POSTCOPY_END: 30,
    GET_INFLIGHT_FD: 31,
    SET_INFLIGHT_FD: 32,
    GPU_SET_SOCKET: 33,
    RESET_DEVICE: 34,
    VRING_KICK: 35,
    GET_MAX_MEM_SLOTS: 36,
    ADD_MEM_REG: 37,
    REM_MEM_REG: 38,
    SET_STATUS: 39,
    GET_STATUS: 40,
    GET_SHARED_OBJECT: 41,
    SET_DEVICE_STATE_FD: 42,
    CHECK_DEVICE_STATE: 43,
    GET_SHMEM_CONFIG: 44,
    GET_VRING_BASE_SKIP_DRAIN: 45,
    GET_SHARED_MEMORY_REGIONS: 1004,
  },
  backend: {
    BACKEND_IOTLB_MSG: 1,
    BACKEND_CONFIG_CHANGE_MSG: 2,
    BACKEND_VRING_HOST_NOTIFIER_MSG: 3,
    BACKEND_VRING_CALL: 4,
    BACKEND_VRING_ERR: 5,
    BACKEND_SHARED_OBJECT_ADD: 6,
    BACKEND_SHARED_OBJECT_REMOVE: 7,
    BACKEND_SHARED_OBJECT_LOOKUP: 8,
    BACKEND_SHMEM_MAP: 9,
    BACKEND_SHMEM_UNMAP: 10,
    BACKEND_MEM_READ: 11,
    BACKEND_MEM_WRITE: 12,
    CROSVM_SHMEM_MAP: 1000,
    CROSVM_SHMEM_UNMAP: 1001,
  },
};

/** Whole frame hex of a case: hand-written header (request, flags, size) + payload. */
export function frameHex(c: GoldenCase): string {
  const id = ids[c.channel][c.name];
  if (id === undefined) throw new Error(`no id for ${c.name}`);
  return h32(id) + h32(c.flags) + h32(c.payload.length / 2) + c.payload;
}

const kebab = (name: string): string => name.toLowerCase().replaceAll("_", "-");

function cases(dialect: Dialect): GoldenCase[] {
  const out: GoldenCase[] = [];
  const add = (
    channel: Channel,
    kind: "request" | "reply",
    name: string,
    flags: number,
    value: unknown,
    payload: string,
    variant = "",
    extra: { postcopy?: boolean } = {},
  ): void => {
    out.push({
      file: `${channel === "backend" ? `backend.${kebab(name.replace(/^BACKEND_/u, ""))}` : kebab(name)}.${kind}${variant}`,
      channel,
      kind,
      name,
      flags,
      value,
      payload,
      ...extra,
    });
  };
  const fe = (name: string, flags: number, value: unknown, payload: string, variant = ""): void =>
    add("frontend", "request", name, flags, value, payload, variant);
  const feRep = (name: string, value: unknown, payload: string, variant = "", extra: { postcopy?: boolean } = {}): void =>
    add("frontend", "reply", name, REP, value, payload, variant, extra);
  const be = (name: string, flags: number, value: unknown, payload: string, variant = ""): void =>
    add("backend", "request", name, flags, value, payload, variant);
  const beRep = (name: string, value: unknown, payload: string, variant = ""): void => add("backend", "reply", name, REP, value, payload, variant);
  const ackOk = (name: string): void => feRep(name, 0n, h64(0n));

  // --- front-end requests (docs/protocol.md#front-end-requests) ---
  fe("GET_FEATURES", REQ, undefined, "");
  feRep("GET_FEATURES", 0x175007e46n, h64(0x175007e46n));
  fe("SET_FEATURES", NEED, 0x140000046n, h64(0x140000046n));
  ackOk("SET_FEATURES");
  fe("SET_OWNER", NEED, undefined, "");
  ackOk("SET_OWNER");
  fe("RESET_OWNER", REQ, undefined, "");
  ackOk("RESET_OWNER");

  const r0 = { guestPhysAddr: 0n, memorySize: 0xa0000n, userAddr: 0x7f00_0000_0000n, mmapOffset: 0n };
  const r1 = { guestPhysAddr: 0xc0000n, memorySize: 0xff40000n, userAddr: 0x7f00_000c_0000n, mmapOffset: 0xc0000n };
  const region = (r: typeof r0): string => h64(r.guestPhysAddr) + h64(r.memorySize) + h64(r.userAddr) + h64(r.mmapOffset);
  fe("SET_MEM_TABLE", NEED, { regions: [r0, r1] }, h32(2) + zeros(4) + region(r0) + region(r1));
  ackOk("SET_MEM_TABLE");
  // The largest table libvhost-user accepts: 8 regions, 8 + 8·32 = 264 bytes.
  const eight = Array.from({ length: 8 }, (_, i) => ({
    guestPhysAddr: BigInt(i) << 32n,
    memorySize: 0x1000_0000n,
    userAddr: 0x7f00_0000_0000n + (BigInt(i) << 32n),
    mmapOffset: BigInt(i) * 0x1000n,
  }));
  fe("SET_MEM_TABLE", NEED, { regions: eight }, h32(8) + zeros(4) + eight.map(region).join(""), "-8-regions");
  const b0 = { ...r0, userAddr: 0x7ff0_0000_0000n };
  const b1 = { ...r1, userAddr: 0x7ff0_000c_0000n };
  feRep("SET_MEM_TABLE", { regions: [b0, b1] }, h32(2) + zeros(4) + region(b0) + region(b1), "-postcopy", { postcopy: true });

  fe("SET_LOG_BASE", REQ, { mmapSize: 0x8000n, mmapOffset: 0x1000n }, h64(0x8000n) + h64(0x1000n));
  feRep("SET_LOG_BASE", 0n, h64(0n));
  feRep("SET_LOG_BASE", { mmapSize: 0x8000n, mmapOffset: 0x1000n }, h64(0x8000n) + h64(0x1000n), "-log");
  fe("SET_LOG_FD", REQ, undefined, "");
  ackOk("SET_LOG_FD");
  fe("SET_VRING_NUM", REQ, { index: 0, num: 256 }, h32(0) + h32(256));
  ackOk("SET_VRING_NUM");
  const addr = { index: 1, flags: 1, descAddr: 0x7f00_0010_0000n, usedAddr: 0x7f00_0010_2000n, availAddr: 0x7f00_0010_1000n, logAddr: 0x1_0000_2000n };
  // Note used (16) before avail (24).
  fe("SET_VRING_ADDR", NEED, addr, h32(1) + h32(1) + h64(addr.descAddr) + h64(addr.usedAddr) + h64(addr.availAddr) + h64(addr.logAddr));
  ackOk("SET_VRING_ADDR");
  fe("SET_VRING_BASE", REQ, { index: 0, num: 0 }, h32(0) + h32(0));
  ackOk("SET_VRING_BASE");
  fe("GET_VRING_BASE", REQ, { index: 0, num: 0 }, h32(0) + h32(0));
  feRep("GET_VRING_BASE", { index: 0, num: 0x1234 }, h32(0) + h32(0x1234));
  fe("SET_VRING_KICK", REQ, { index: 1, noFd: false }, h64(1n));
  ackOk("SET_VRING_KICK");
  fe("SET_VRING_CALL", REQ, { index: 0, noFd: true }, h64(0x100n), "-nofd");
  fe("SET_VRING_CALL", REQ, { index: 2, noFd: false }, h64(2n));
  ackOk("SET_VRING_CALL");
  fe("SET_VRING_ERR", REQ, { index: 255, noFd: false }, h64(0xffn));
  ackOk("SET_VRING_ERR");
  fe("GET_PROTOCOL_FEATURES", REQ, undefined, "");
  const pf = 0x8f2bn | dialect.shmemFeature;
  feRep("GET_PROTOCOL_FEATURES", pf, h64(pf));
  fe("SET_PROTOCOL_FEATURES", NEED, pf, h64(pf));
  ackOk("SET_PROTOCOL_FEATURES");
  fe("GET_QUEUE_NUM", REQ, undefined, "");
  feRep("GET_QUEUE_NUM", 1n, h64(1n));
  fe("SET_VRING_ENABLE", REQ, { index: 0, num: 1 }, h32(0) + h32(1));
  ackOk("SET_VRING_ENABLE");
  // MAC 52:54:00:12:34:56 in the first six bytes.
  fe("SEND_RARP", REQ, 0x5634_1200_5452n, `525400123456${zeros(2)}`);
  ackOk("SEND_RARP");
  fe("NET_SET_MTU", NEED, 1500n, h64(1500n));
  ackOk("NET_SET_MTU");
  fe("SET_BACKEND_REQ_FD", NEED, undefined, "");
  ackOk("SET_BACKEND_REQ_FD");
  const tlb = { iova: 0x1000n, size: 0x1000n, uaddr: 0x7f00_0000_1000n, perm: 3, type: 2 };
  fe("IOTLB_MSG", NEED, tlb, h64(tlb.iova) + h64(tlb.size) + h64(tlb.uaddr) + h8(3) + h8(2) + zeros(6));
  ackOk("IOTLB_MSG");
  fe("SET_VRING_ENDIAN", REQ, { index: 0, num: 0 }, h32(0) + h32(0));
  ackOk("SET_VRING_ENDIAN");
  fe("GET_CONFIG", REQ, { offset: 0, flags: 0, data: new Uint8Array(8) }, h32(0) + h32(8) + h32(0) + zeros(8));
  feRep("GET_CONFIG", { offset: 0, flags: 0, data: bytes(h64(2048n)) }, h32(0) + h32(8) + h32(0) + h64(2048n));
  fe("SET_CONFIG", NEED, { offset: 32, flags: 0, data: Uint8Array.of(1) }, `${h32(32) + h32(1) + h32(0)}01`);
  const cfg256 = Uint8Array.from({ length: 256 }, (_, i) => 255 - i);
  fe("SET_CONFIG", REQ, { offset: 0, flags: 1, data: cfg256 }, h32(0) + h32(256) + h32(1) + hexOf(cfg256), "-256-bytes");
  ackOk("SET_CONFIG");
  const crypto = "0102030405060708090a0b0c0d0e0f10";
  fe("CREATE_CRYPTO_SESSION", REQ, bytes(crypto), crypto);
  feRep("CREATE_CRYPTO_SESSION", bytes(crypto + h64(7n)), crypto + h64(7n));
  fe("CLOSE_CRYPTO_SESSION", REQ, 7n, h64(7n));
  ackOk("CLOSE_CRYPTO_SESSION");
  fe("POSTCOPY_ADVISE", REQ, undefined, "");
  feRep("POSTCOPY_ADVISE", undefined, "");
  fe("POSTCOPY_LISTEN", NEED, undefined, "");
  ackOk("POSTCOPY_LISTEN");
  fe("POSTCOPY_END", REQ, undefined, "");
  ackOk("POSTCOPY_END");
  const inflightHex = (s: bigint, o: bigint, n: number, q: number): string => h64(s) + h64(o) + h16(n) + h16(q) + zeros(4);
  fe("GET_INFLIGHT_FD", REQ, { mmapSize: 0n, mmapOffset: 0n, numQueues: 1, queueSize: 128 }, inflightHex(0n, 0n, 1, 128));
  feRep("GET_INFLIGHT_FD", { mmapSize: 0x2000n, mmapOffset: 0n, numQueues: 1, queueSize: 128 }, inflightHex(0x2000n, 0n, 1, 128));
  fe("SET_INFLIGHT_FD", NEED, { mmapSize: 0x2000n, mmapOffset: 0n, numQueues: 1, queueSize: 128 }, inflightHex(0x2000n, 0n, 1, 128));
  ackOk("SET_INFLIGHT_FD");
  fe("GPU_SET_SOCKET", NEED, undefined, "");
  ackOk("GPU_SET_SOCKET");
  fe("RESET_DEVICE", REQ, undefined, "");
  ackOk("RESET_DEVICE");
  fe("VRING_KICK", REQ, { index: 0, num: 0 }, h32(0) + h32(0));
  ackOk("VRING_KICK");
  fe("GET_MAX_MEM_SLOTS", REQ, undefined, "");
  feRep("GET_MAX_MEM_SLOTS", 32n, h64(32n));
  fe("ADD_MEM_REG", NEED, r1, zeros(8) + region(r1));
  ackOk("ADD_MEM_REG");
  feRep("ADD_MEM_REG", b1, zeros(8) + region(b1), "-postcopy", { postcopy: true });
  fe("REM_MEM_REG", NEED, r1, zeros(8) + region(r1));
  ackOk("REM_MEM_REG");
  fe("SET_STATUS", NEED, 15n, h64(15n));
  ackOk("SET_STATUS");
  fe("GET_STATUS", REQ, undefined, "");
  feRep("GET_STATUS", 15n, h64(15n));
  const uuid = "0011223344556677" + "8899aabbccddeeff";
  fe("GET_SHARED_OBJECT", REQ, { uuid: bytes(uuid) }, uuid);
  feRep("GET_SHARED_OBJECT", undefined, "");
  feRep("GET_SHARED_OBJECT", { uuid: bytes(uuid) }, uuid, "-echo");
  fe("SET_DEVICE_STATE_FD", REQ, { direction: 0, phase: 0 }, h32(0) + h32(0));
  feRep("SET_DEVICE_STATE_FD", { error: 0, noFd: true }, h64(0x100n));
  fe("CHECK_DEVICE_STATE", REQ, undefined, "");
  feRep("CHECK_DEVICE_STATE", 0n, h64(0n));
  fe("GET_VRING_BASE_SKIP_DRAIN", REQ, { index: 1, num: 0 }, h32(1) + h32(0));
  // Packed ring base: avail idx 5, avail wrap 1, used idx 3, used wrap 1.
  feRep("GET_VRING_BASE_SKIP_DRAIN", { index: 1, num: 0x8003_8005 }, h32(1) + h32(0x8003_8005));

  // --- back-end requests (docs/protocol.md#back-end-requests) ---
  const tlbMiss = { iova: 0x2000n, size: 0x1000n, uaddr: 0n, perm: 1, type: 1 };
  be("BACKEND_IOTLB_MSG", NEED, tlbMiss, h64(0x2000n) + h64(0x1000n) + h64(0n) + h8(1) + h8(1) + zeros(6));
  beRep("BACKEND_IOTLB_MSG", 0n, h64(0n));
  be("BACKEND_CONFIG_CHANGE_MSG", NEED, undefined, "");
  beRep("BACKEND_CONFIG_CHANGE_MSG", 0n, h64(0n));
  be("BACKEND_VRING_HOST_NOTIFIER_MSG", NEED, { index: 1, noFd: false, size: 0x1000n, offset: 0x3000n }, h64(1n) + h64(0x1000n) + h64(0x3000n));
  be("BACKEND_VRING_HOST_NOTIFIER_MSG", NEED, { index: 1, noFd: true, size: 0x1000n, offset: 0n }, h64(0x101n) + h64(0x1000n) + h64(0n), "-nofd");
  beRep("BACKEND_VRING_HOST_NOTIFIER_MSG", 0n, h64(0n));
  be("BACKEND_VRING_CALL", REQ, { index: 0, num: 0 }, h32(0) + h32(0));
  beRep("BACKEND_VRING_CALL", 0n, h64(0n));
  be("BACKEND_VRING_ERR", NEED, { index: 3, num: 0 }, h32(3) + h32(0));
  beRep("BACKEND_VRING_ERR", 1n, h64(1n));
  be("BACKEND_SHARED_OBJECT_ADD", NEED, { uuid: bytes(uuid) }, uuid);
  beRep("BACKEND_SHARED_OBJECT_ADD", 0n, h64(0n));
  be("BACKEND_SHARED_OBJECT_REMOVE", NEED, { uuid: bytes(uuid) }, uuid);
  beRep("BACKEND_SHARED_OBJECT_REMOVE", 0n, h64(0n));
  be("BACKEND_SHARED_OBJECT_LOOKUP", NEED, { uuid: bytes(uuid) }, uuid);
  beRep("BACKEND_SHARED_OBJECT_LOOKUP", 0n, h64(0n));

  // vhostkit MEM_READ / MEM_WRITE: the docs/shmem.md#example-frames, verbatim.
  be("BACKEND_MEM_READ", NEED, { guestAddress: 0x1_0000_0000n, size: 0x1000 }, "0000000001000000" + "00100000" + "00000000");
  const data4k = Uint8Array.from({ length: 4096 }, (_, i) => i & 0xff);
  beRep("BACKEND_MEM_READ", { guestAddress: 0x1_0000_0000n, data: data4k }, `00000000010000000010000000000000${hexOf(data4k)}`);
  beRep("BACKEND_MEM_READ", { guestAddress: 0x1_0000_0000n, data: new Uint8Array(0) }, "0000000001000000" + "00000000" + "00000000", "-failure");
  be("BACKEND_MEM_WRITE", NEED, { guestAddress: 0x2000n, data: bytes("deadbeef") }, "0020000000000000" + "04000000" + "00000000" + "deadbeef");
  beRep("BACKEND_MEM_WRITE", 0n, "0000000000000000");

  // --- SHMEM messages: the dialect decides (docs/shmem.md#dialects) ---
  if (dialect.layout === "mmap40") {
    fe("GET_SHMEM_CONFIG", REQ, undefined, "");
    const sizes = Array.from({ length: 256 }, (_, i) => (i === 1 ? 0x40_0000n : i === 3 ? 0x1_0000n : 0n));
    feRep("GET_SHMEM_CONFIG", { nregions: 2, sizes }, h32(2) + zeros(4) + sizes.map(h64).join(""));
    const full = Array.from({ length: 256 }, (_, i) => BigInt(i + 1) << 12n);
    feRep("GET_SHMEM_CONFIG", { nregions: 256, sizes: full }, h32(256) + zeros(4) + full.map(h64).join(""), "-256-regions");
    const map = { shmid: 1, fdOffset: 0n, shmOffset: 0x1_0000n, len: 0x4000n, flags: 1n };
    be("BACKEND_SHMEM_MAP", NEED, map, h8(1) + zeros(7) + h64(0n) + h64(0x1_0000n) + h64(0x4000n) + h64(1n));
    beRep("BACKEND_SHMEM_MAP", 0n, h64(0n));
    const ro = { shmid: 0, fdOffset: 0x20_0000n, shmOffset: 0n, len: 0x1000n, flags: 0n };
    be("BACKEND_SHMEM_MAP", REQ, ro, h8(0) + zeros(7) + h64(0x20_0000n) + h64(0n) + h64(0x1000n) + h64(0n), "-readonly");
    const unmap = { shmid: 1, fdOffset: 0n, shmOffset: 0x1_0000n, len: 0x4000n, flags: 0n };
    be("BACKEND_SHMEM_UNMAP", NEED, unmap, h8(1) + zeros(7) + h64(0n) + h64(0x1_0000n) + h64(0x4000n) + h64(0n));
    beRep("BACKEND_SHMEM_UNMAP", 0n, h64(0n));
  } else {
    fe("GET_SHARED_MEMORY_REGIONS", REQ, undefined, "");
    feRep(
      "GET_SHARED_MEMORY_REGIONS",
      {
        regions: [
          { id: 0, length: 0x4000_0000n },
          { id: 1, length: 0x1000n },
        ],
      },
      h64(2n) + h8(0) + zeros(7) + h64(0x4000_0000n) + h8(1) + zeros(7) + h64(0x1000n),
    );
    // Note shm_offset (8) before fd_offset (16).
    const map = { flags: 3, shmid: 1, shmOffset: 0x1_0000n, fdOffset: 0x2000n, len: 0x4000n };
    be("CROSVM_SHMEM_MAP", REQ, map, h8(3) + h8(1) + zeros(6) + h64(0x1_0000n) + h64(0x2000n) + h64(0x4000n));
    beRep("CROSVM_SHMEM_MAP", 0n, h64(0n));
    be("CROSVM_SHMEM_UNMAP", REQ, { shmid: 1, shmOffset: 0x1_0000n, len: 0x4000n }, h8(1) + zeros(7) + h64(0x1_0000n) + h64(0x4000n));
    beRep("CROSVM_SHMEM_UNMAP", 0n, h64(0n));
  }
  return out;
}

/** Every golden case, by dialect name. */
export const GOLDEN: Readonly<Record<DialectName, readonly GoldenCase[]>> = Object.fromEntries(
  (Object.keys(Dialects) as DialectName[]).map((name) => [name, cases(Dialects[name])]),
) as unknown as Record<DialectName, readonly GoldenCase[]>;

/**
 * The package's `test/` directory. Cut from this module's URL at `/test/` rather than resolved
 * relative to it: under Bun this file runs from `test/helpers/`, but the Node leg bundles it into
 * the test file (`test/.<name>.node.mjs`), where `import.meta.url` is the bundle's.
 */
const TEST_DIR = import.meta.url.slice(0, import.meta.url.lastIndexOf("/test/") + "/test/".length);

/** Directory of the golden fixtures of `dialect`. */
export function goldenDir(dialect: DialectName): URL {
  return new URL(`fixtures/golden/${dialect}/`, TEST_DIR);
}

/** One distinct golden frame: a fixture file whose bytes are the same in every dialect listed. */
export interface GoldenEncoding {
  /** File stem, as in every dialect directory that has it. */
  readonly file: string;
  /** Whole frame hex (hand-written header + payload). */
  readonly hex: string;
  /** The dialects whose fixture `file` holds exactly these bytes, each with its case. */
  readonly cases: readonly { readonly dialect: DialectName; readonly case: GoldenCase }[];
}

/**
 * The golden cases of every dialect grouped by the bytes they produce: one entry per file and
 * distinct frame. A frame that is the same in several dialects (all but the SHMEM messages and the
 * protocol-feature masks) is one entry listing those dialects.
 */
export function distinctGolden(): GoldenEncoding[] {
  const byFrame = new Map<string, { file: string; hex: string; cases: { dialect: DialectName; case: GoldenCase }[] }>();
  for (const dialect of Object.keys(GOLDEN) as DialectName[]) {
    for (const c of GOLDEN[dialect]) {
      const hex = frameHex(c);
      const key = `${c.file}:${hex}`;
      const entry = byFrame.get(key) ?? { file: c.file, hex, cases: [] };
      entry.cases.push({ dialect, case: c });
      byFrame.set(key, entry);
    }
  }
  return [...byFrame.values()];
}
