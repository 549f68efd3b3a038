/**
 * Boundary cases (docs/style.md#tests, rust-vmm message.rs style): size caps ± 1, wrong version, reserved
 * flag bits, overflowing offsets, truncated payloads, GET_SHMEM_CONFIG nregions rules, MEM_READ /
 * MEM_WRITE sizes and padding, alignment, reserved payload bits, unknown ids, table facts.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { WireErrorCode } from "@vhostkit/wire";
import {
  ByteReader,
  CROSVM_LEGACY,
  FrontendMessages,
  MAX_PAYLOAD_SIZE,
  U64_MAX,
  alwaysReplied,
  checkFrameSize,
  decodeHeader,
  decodeMemAccessHead,
  decodeMessage,
  decodePackedVringBase,
  decodeReply,
  decodeSplitVringBase,
  encodeMemAccessHead,
  encodeMessage,
  encodePackedVringBase,
  encodeReply,
  encodeSplitVringBase,
  expectedFdCount,
  isWireError,
  makeShmemConfig,
  maxFdsFor,
  messageSpecs,
  tryMessageSpec,
  VringStateCodec,
} from "@vhostkit/wire";

/** Build a frame by hand: header + payload bytes. */
function frame(request: number, flags: number, payload: Uint8Array | number, size?: number): Uint8Array {
  const body = typeof payload === "number" ? new Uint8Array(payload) : payload;
  const f = new Uint8Array(12 + body.byteLength);
  const v = new DataView(f.buffer);
  v.setUint32(0, request, true);
  v.setUint32(4, flags, true);
  v.setUint32(8, size ?? body.byteLength, true);
  f.set(body, 12);
  return f;
}

/** Payload builder: a list of [byteOffset, kind, value] writes into `n` zero bytes. */
function payload(n: number, writes: ReadonlyArray<readonly [number, "u8" | "u32" | "u64", number | bigint]>): Uint8Array {
  const p = new Uint8Array(n);
  const v = new DataView(p.buffer);
  for (const [off, kind, val] of writes) {
    if (kind === "u8") v.setUint8(off, Number(val));
    else if (kind === "u32") v.setUint32(off, Number(val), true);
    else v.setBigUint64(off, BigInt(val), true);
  }
  return p;
}

function rejects(fn: () => unknown, code: WireErrorCode, message?: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(isWireError(e), `expected WireError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    if (message) assert.match(e.message, message);
    return true;
  });
}

describe("header", () => {
  test("version must be 1, reserved bits must be clear", () => {
    for (const flags of [0x0, 0x2, 0x3, 0x6]) rejects(() => decodeMessage("frontend", frame(1, flags, 0)), "BAD_VERSION");
    for (const flags of [0x11, 0x21, 0x8000_0001, 0xffff_fff1]) rejects(() => decodeMessage("frontend", frame(1, flags, 0)), "RESERVED_FLAGS");
    assert.equal(decodeMessage("frontend", frame(1, 0x9, 0)).name, "GET_FEATURES");
  });
  test("request vs reply flags", () => {
    rejects(() => decodeMessage("frontend", frame(1, 0x5, 0)), "BAD_VALUE");
    rejects(() => decodeReply("frontend", frame(1, 0x1, 8)), "BAD_VALUE");
    rejects(() => decodeReply("frontend", frame(1, 0xd, 8)), "BAD_VALUE");
    assert.equal(decodeReply("frontend", frame(1, 0x5, 8)).value, 0n);
    rejects(() => encodeMessage("frontend", "GET_FEATURES", 0x5, undefined), "BAD_VALUE");
    rejects(() => encodeMessage("frontend", "GET_FEATURES", 0x11, undefined), "BAD_VALUE");
  });
  test("short header and truncated or overlong frames", () => {
    for (let n = 0; n < 12; n++) rejects(() => decodeHeader(new Uint8Array(n)), "TRUNCATED");
    const addr = encodeMessage("frontend", "SET_VRING_ADDR", 1, { index: 0, flags: 0, descAddr: 0n, usedAddr: 0n, availAddr: 0n, logAddr: 0n });
    for (let n = 12; n < addr.byteLength; n += 7) rejects(() => decodeMessage("frontend", addr.subarray(0, n)), "TRUNCATED");
    const longer = new Uint8Array(addr.byteLength + 1);
    longer.set(addr);
    rejects(() => decodeMessage("frontend", longer), "BAD_SIZE");
  });
  test("unknown ids are a typed error on both channels", () => {
    for (const id of [0, 46, 999, 1002, 0xffff_ffff]) rejects(() => decodeMessage("frontend", frame(id, 1, 0)), "UNKNOWN_REQUEST");
    for (const id of [0, 13, 1002, 1004]) rejects(() => decodeMessage("backend", frame(id, 1, 0)), "UNKNOWN_REQUEST");
    rejects(() => checkFrameSize({ request: 46, flags: 1, size: 0 }, "frontend"), "UNKNOWN_REQUEST");
  });
});

describe("size checks happen before the body is read", () => {
  test("fixed layouts: size ± 1 is BAD_SIZE, with expected/actual detail", () => {
    for (const size of [39, 41]) {
      assert.throws(
        () => decodeMessage("frontend", frame(9, 1, size)),
        (e: unknown) => {
          assert.ok(isWireError(e));
          assert.equal(e.code, "BAD_SIZE");
          assert.deepEqual([e.detail.request, e.detail.expected, e.detail.actual], ["SET_VRING_ADDR", 40, size]);
          return true;
        },
      );
    }
    // Header claims 39 but only 12 header bytes arrived: the size check fires first.
    rejects(() => decodeMessage("frontend", frame(9, 1, 0, 39)), "BAD_SIZE");
    rejects(() => checkFrameSize({ request: 9, flags: 1, size: 39 }, "frontend"), "BAD_SIZE");
    assert.equal(checkFrameSize({ request: 9, flags: 1, size: 40 }, "frontend").name, "SET_VRING_ADDR");
    assert.equal(checkFrameSize({ request: 1, flags: 5, size: 8 }, "frontend").name, "GET_FEATURES");
    rejects(() => checkFrameSize({ request: 1, flags: 5, size: 0 }, "frontend"), "BAD_SIZE");
  });
  test("payload cap: max ± 1 (default 4096, configurable)", () => {
    assert.equal(decodeMessage("frontend", frame(26, 1, MAX_PAYLOAD_SIZE)).name, "CREATE_CRYPTO_SESSION");
    rejects(() => decodeMessage("frontend", frame(26, 1, MAX_PAYLOAD_SIZE + 1)), "TOO_LARGE");
    rejects(() => checkFrameSize({ request: 26, flags: 1, size: 0xffff_ffff }, "frontend"), "TOO_LARGE");
    assert.equal(decodeMessage("frontend", frame(26, 1, 272), undefined, { maxPayload: 272 }).name, "CREATE_CRYPTO_SESSION");
    rejects(() => decodeMessage("frontend", frame(26, 1, 273), undefined, { maxPayload: 272 }), "TOO_LARGE");
  });
  test("config: 12 + 256 accepted, 12 + 257 rejected, size field must match", () => {
    const ok = frame(25, 1, payload(12 + 256, [[4, "u32", 256]]));
    assert.equal(decodeMessage("frontend", ok).name, "SET_CONFIG");
    rejects(() => decodeMessage("frontend", frame(25, 1, payload(12 + 257, [[4, "u32", 257]]))), "BAD_SIZE");
    rejects(() => decodeMessage("frontend", frame(25, 1, payload(12 + 8, [[4, "u32", 7]]))), "BAD_SIZE");
    rejects(() => decodeMessage("frontend", frame(25, 1, payload(12, [[4, "u32", 300]]))), "BAD_VALUE");
    rejects(() => encodeMessage("frontend", "SET_CONFIG", 1, { offset: 0, flags: 0, data: new Uint8Array(257) }), "BAD_VALUE");
    rejects(() => decodeReply("frontend", frame(24, 5, 0)), "BAD_SIZE");
    assert.equal(
      decodeMessage(
        "frontend",
        frame(
          25,
          1,
          payload(13, [
            [0, "u32", 0xffff_ffff],
            [4, "u32", 1],
          ]),
        ),
      ).name,
      "SET_CONFIG",
    );
    rejects(
      () =>
        decodeMessage(
          "frontend",
          frame(
            25,
            1,
            payload(14, [
              [0, "u32", 0xffff_ffff],
              [4, "u32", 2],
            ]),
          ),
        ),
      "OVERFLOW",
    );
  });
  test("memory table: 8 regions max, nregions must match the size", () => {
    const region = (i: number): Array<readonly [number, "u64", bigint]> => [[8 + 32 * i + 8, "u64", 0x1000n]];
    const table = (n: number, nregions = n): Uint8Array =>
      frame(5, 1, payload(8 + 32 * n, [[0, "u32", nregions], ...Array.from({ length: n }, (_, i) => region(i)).flat()]));
    assert.equal(decodeMessage("frontend", table(8)).name, "SET_MEM_TABLE");
    assert.equal(decodeMessage("frontend", table(0)).name, "SET_MEM_TABLE");
    rejects(() => decodeMessage("frontend", table(9)), "BAD_SIZE");
    rejects(() => decodeMessage("frontend", table(8, 9)), "BAD_VALUE");
    rejects(() => decodeMessage("frontend", table(2, 3)), "BAD_SIZE");
    rejects(() => decodeMessage("frontend", frame(5, 1, 8 + 31)), "BAD_SIZE");
    const r = { guestPhysAddr: 0n, memorySize: 0x1000n, userAddr: 0n, mmapOffset: 0n };
    rejects(() => encodeMessage("frontend", "SET_MEM_TABLE", 1, { regions: Array.from({ length: 9 }, () => r) }), "BAD_VALUE");
  });
});

describe("overflowing offsets (u64, bigint)", () => {
  const region = (gpa: bigint, size: bigint, uaddr = 0n, off = 0n): Uint8Array =>
    payload(40, [
      [8, "u64", gpa],
      [16, "u64", size],
      [24, "u64", uaddr],
      [32, "u64", off],
    ]);
  test("memory region: base + size up to 2^64 - 1 is fine, one more overflows", () => {
    assert.equal(decodeMessage("frontend", frame(37, 1, region(U64_MAX - 0x1000n, 0x1000n))).name, "ADD_MEM_REG");
    rejects(() => decodeMessage("frontend", frame(37, 1, region(U64_MAX - 0xfffn, 0x1000n))), "OVERFLOW");
    rejects(() => decodeMessage("frontend", frame(37, 1, region(0n, 0x1000n, U64_MAX))), "OVERFLOW");
    rejects(() => decodeMessage("frontend", frame(38, 1, region(0n, 0x1000n, 0n, U64_MAX))), "OVERFLOW");
    rejects(() => decodeMessage("frontend", frame(38, 1, region(0n, 0n))), "BAD_VALUE");
  });
  test("log, inflight, iotlb, vring area", () => {
    rejects(
      () =>
        decodeMessage(
          "frontend",
          frame(
            6,
            1,
            payload(16, [
              [0, "u64", 2n],
              [8, "u64", U64_MAX - 1n],
            ]),
          ),
        ),
      "OVERFLOW",
    );
    rejects(
      () =>
        decodeMessage(
          "frontend",
          frame(
            32,
            1,
            payload(24, [
              [0, "u64", 1n],
              [8, "u64", U64_MAX],
            ]),
          ),
        ),
      "OVERFLOW",
    );
    rejects(
      () =>
        decodeMessage(
          "frontend",
          frame(
            22,
            1,
            payload(32, [
              [0, "u64", U64_MAX],
              [8, "u64", 1n],
              [24, "u8", 3],
              [25, "u8", 2],
            ]),
          ),
        ),
      "OVERFLOW",
    );
    rejects(
      () =>
        decodeMessage(
          "backend",
          frame(
            3,
            1,
            payload(24, [
              [8, "u64", 0x1000n],
              [16, "u64", U64_MAX],
            ]),
          ),
        ),
      "OVERFLOW",
    );
    rejects(
      () =>
        decodeMessage(
          "frontend",
          frame(
            22,
            1,
            payload(32, [
              [24, "u8", 4],
              [25, "u8", 2],
            ]),
          ),
        ),
      "BAD_VALUE",
    );
    rejects(
      () =>
        decodeMessage(
          "frontend",
          frame(
            22,
            1,
            payload(32, [
              [24, "u8", 3],
              [25, "u8", 0],
            ]),
          ),
        ),
      "BAD_VALUE",
    );
  });
  test("VhostUserMMap: shm_offset/fd_offset + len, len 0, flags, padding", () => {
    const mmap = (fd: bigint, shm: bigint, len: bigint, flags: bigint, pad = 0): Uint8Array =>
      frame(
        9,
        9,
        payload(40, [
          [0, "u8", 1],
          [3, "u8", pad],
          [8, "u64", fd],
          [16, "u64", shm],
          [24, "u64", len],
          [32, "u64", flags],
        ]),
      );
    assert.equal(decodeMessage("backend", mmap(0n, U64_MAX - 0x1000n, 0x1000n, 1n)).name, "BACKEND_SHMEM_MAP");
    rejects(() => decodeMessage("backend", mmap(0n, U64_MAX - 0xfffn, 0x1000n, 1n)), "OVERFLOW");
    rejects(() => decodeMessage("backend", mmap(U64_MAX, 0n, 0x1000n, 1n)), "OVERFLOW");
    rejects(() => decodeMessage("backend", mmap(0n, 0n, 0n, 1n)), "BAD_VALUE");
    rejects(() => decodeMessage("backend", mmap(0n, 0n, 0x1000n, 2n)), "BAD_VALUE");
    rejects(() => decodeMessage("backend", mmap(0n, 0n, 0x1000n, 1n << 63n)), "BAD_VALUE");
    // Non-zero padding is accepted (docs/shmem.md#padding) and re-encoded as zero.
    const padded = decodeMessage("backend", mmap(0n, 0n, 0x1000n, 0n, 0xff));
    assert.equal(padded.name, "BACKEND_SHMEM_MAP");
    if (padded.name === "BACKEND_SHMEM_MAP") {
      const again = encodeMessage("backend", "BACKEND_SHMEM_MAP", 9, padded.value);
      assert.equal(again[12 + 3], 0);
    }
    rejects(() => encodeMessage("backend", "BACKEND_SHMEM_MAP", 9, { shmid: 0, fdOffset: 0n, shmOffset: U64_MAX, len: 1n, flags: 0n }), "OVERFLOW");
  });
  test("crosvm legacy map/unmap", () => {
    const map = (flags: number, shm: bigint, len: bigint): Uint8Array =>
      frame(
        1000,
        1,
        payload(32, [
          [0, "u8", flags],
          [8, "u64", shm],
          [24, "u64", len],
        ]),
      );
    assert.equal(decodeMessage("backend", map(3, 0n, 0x1000n), CROSVM_LEGACY).name, "CROSVM_SHMEM_MAP");
    rejects(() => decodeMessage("backend", map(4, 0n, 0x1000n), CROSVM_LEGACY), "BAD_VALUE");
    rejects(() => decodeMessage("backend", map(1, U64_MAX, 0x1000n), CROSVM_LEGACY), "OVERFLOW");
    rejects(
      () =>
        decodeMessage(
          "backend",
          frame(
            1001,
            1,
            payload(24, [
              [8, "u64", U64_MAX],
              [16, "u64", 1n],
            ]),
          ),
          CROSVM_LEGACY,
        ),
      "OVERFLOW",
    );
    rejects(() => decodeReply("frontend", frame(1004, 5, payload(8 + 16, [[0, "u64", 2n]])), CROSVM_LEGACY), "BAD_SIZE");
    rejects(() => decodeReply("frontend", frame(1004, 5, payload(8, [[0, "u64", 257n]])), CROSVM_LEGACY), "BAD_VALUE");
  });
});

describe("GET_SHMEM_CONFIG reply (docs/shmem.md#region-query)", () => {
  const config = (nregions: number, nonZero: readonly number[]): Uint8Array =>
    frame(44, 5, payload(2056, [[0, "u32", nregions], ...nonZero.map((i) => [8 + 8 * i, "u64", 0x1000n] as const)]));
  test("nregions counts non-zero entries, keyed by shmid (not a prefix)", () => {
    const d = decodeReply("frontend", config(1, [5]));
    assert.equal(d.name, "GET_SHMEM_CONFIG");
    if (d.name === "GET_SHMEM_CONFIG") {
      const v = d.value as { nregions: number; sizes: readonly bigint[] };
      assert.equal(v.nregions, 1);
      assert.equal(v.sizes[5], 0x1000n);
      assert.equal(v.sizes.length, 256);
    }
    const all = Array.from({ length: 256 }, (_, i) => i);
    assert.equal(decodeReply("frontend", config(256, all)).name, "GET_SHMEM_CONFIG");
  });
  test("nregions > 256 or inconsistent with the array is rejected", () => {
    rejects(() => decodeReply("frontend", config(257, [])), "BAD_VALUE", /exceeds 256/u);
    rejects(() => decodeReply("frontend", config(0xffff_ffff, [])), "BAD_VALUE");
    rejects(() => decodeReply("frontend", config(2, [1])), "BAD_VALUE", /non-zero/u);
    rejects(() => decodeReply("frontend", config(1, [1, 2])), "BAD_VALUE");
    rejects(() => decodeReply("frontend", config(1, [])), "BAD_VALUE");
    rejects(() => encodeReply("frontend", "GET_SHMEM_CONFIG", { nregions: 3, sizes: [1n, 0n, 2n] }), "BAD_VALUE");
    rejects(() => encodeReply("frontend", "GET_SHMEM_CONFIG", makeShmemConfig(new Array<bigint>(257).fill(1n))), "BAD_VALUE");
  });
  test("the reply is exactly 2056 bytes", () => {
    rejects(() => decodeReply("frontend", frame(44, 5, 2055)), "BAD_SIZE");
    rejects(() => decodeReply("frontend", frame(44, 5, 2057)), "BAD_SIZE");
    rejects(() => decodeMessage("frontend", frame(44, 1, 8)), "BAD_SIZE");
    assert.equal(encodeReply("frontend", "GET_SHMEM_CONFIG", makeShmemConfig([0n, 0x10000n])).byteLength, 12 + 2056);
  });
});

describe("vhostkit MEM_READ / MEM_WRITE (docs/shmem.md#extension-wire-format)", () => {
  const head = (size: number, pad = 0, ga = 0x1000n): Array<readonly [number, "u32" | "u64", number | bigint]> => [
    [0, "u64", ga],
    [8, "u32", size],
    [12, "u32", pad],
  ];
  test("MEM_READ size 0 / 1 / 65536 / 65537", () => {
    rejects(() => decodeMessage("backend", frame(11, 9, payload(16, head(0)))), "BAD_VALUE");
    assert.equal(decodeMessage("backend", frame(11, 9, payload(16, head(1)))).name, "BACKEND_MEM_READ");
    assert.equal(decodeMessage("backend", frame(11, 9, payload(16, head(65536)))).name, "BACKEND_MEM_READ");
    rejects(() => decodeMessage("backend", frame(11, 9, payload(16, head(65537)))), "BAD_VALUE");
    rejects(() => encodeMessage("backend", "BACKEND_MEM_READ", 9, { guestAddress: 0n, size: 0 }), "BAD_VALUE");
    rejects(() => encodeMessage("backend", "BACKEND_MEM_READ", 9, { guestAddress: 0n, size: 65537 }), "BAD_VALUE");
    rejects(() => decodeMessage("backend", frame(11, 9, payload(17, head(1)))), "BAD_SIZE");
  });
  test("MEM_WRITE: 65536 data bytes pass the 4096 cap, 65537 do not; header size must match", () => {
    const w = (size: number, data: number): Uint8Array => frame(12, 9, payload(16 + data, head(size)));
    const big = decodeMessage("backend", w(65536, 65536));
    assert.equal(big.name, "BACKEND_MEM_WRITE");
    if (big.name === "BACKEND_MEM_WRITE") assert.equal(big.value.data.byteLength, 65536);
    rejects(() => decodeMessage("backend", w(65537, 65537)), "TOO_LARGE");
    rejects(() => checkFrameSize({ request: 12, flags: 9, size: 65553 }, "backend"), "TOO_LARGE");
    assert.equal(checkFrameSize({ request: 12, flags: 9, size: 65552 }, "backend").name, "BACKEND_MEM_WRITE");
    rejects(() => decodeMessage("backend", w(0, 0)), "BAD_SIZE");
    rejects(() => decodeMessage("backend", w(4, 5)), "BAD_SIZE");
    rejects(() => decodeMessage("backend", w(5, 4)), "BAD_SIZE");
    rejects(() => encodeMessage("backend", "BACKEND_MEM_WRITE", 9, { guestAddress: 0n, data: new Uint8Array(65537) }), "BAD_VALUE");
    rejects(() => encodeMessage("backend", "BACKEND_MEM_WRITE", 9, { guestAddress: 0n, data: new Uint8Array(0) }), "BAD_VALUE");
  });
  test("non-zero padding and guest_address + size overflow", () => {
    rejects(() => decodeMessage("backend", frame(11, 9, payload(16, head(4, 1)))), "NONZERO_PADDING");
    rejects(() => decodeMessage("backend", frame(12, 9, payload(20, head(4, 0x100)))), "NONZERO_PADDING");
    rejects(() => decodeReply("backend", frame(11, 5, payload(16, head(0, 1)))), "NONZERO_PADDING");
    rejects(() => decodeMessage("backend", frame(11, 9, payload(16, head(2, 0, U64_MAX)))), "OVERFLOW");
  });
  test("MEM_READ reply: failure = size 0 and no data; data must match size", () => {
    const fail = decodeReply("backend", frame(11, 5, payload(16, head(0))));
    assert.equal(fail.name, "BACKEND_MEM_READ");
    if (fail.name === "BACKEND_MEM_READ") assert.equal(fail.value.data.byteLength, 0);
    rejects(() => decodeReply("backend", frame(11, 5, payload(20, head(0)))), "BAD_SIZE");
    rejects(() => decodeReply("backend", frame(11, 5, payload(20, head(8)))), "BAD_SIZE");
    assert.equal(checkFrameSize({ request: 11, flags: 5, size: 16 + 65536 }, "backend").name, "BACKEND_MEM_READ");
  });
  test("encodeMemAccessHead is byte for byte the codecs' 16-byte head, with their checks", () => {
    const data = new Uint8Array(300).fill(7);
    const ga = 0x1234_5678_9000n;
    const write = encodeMessage("backend", "BACKEND_MEM_WRITE", 9, { guestAddress: ga, data });
    assert.deepEqual(encodeMemAccessHead("BACKEND_MEM_WRITE", ga, 300), write.subarray(12, 28));
    const read = encodeMessage("backend", "BACKEND_MEM_READ", 9, { guestAddress: ga, size: 300 });
    assert.deepEqual(encodeMemAccessHead("BACKEND_MEM_READ", ga, 300), read.subarray(12));
    const failReply = encodeReply("backend", "BACKEND_MEM_READ", { guestAddress: ga, data: new Uint8Array(0) });
    assert.deepEqual(encodeMemAccessHead("BACKEND_MEM_READ", ga, 0), failReply.subarray(12));
    rejects(() => encodeMemAccessHead("BACKEND_MEM_WRITE", 0n, 65537), "BAD_VALUE");
    rejects(() => encodeMemAccessHead("BACKEND_MEM_WRITE", U64_MAX, 2), "OVERFLOW");
  });
  test("encodeMemAccessHead into a scratch head overwrites all 16 bytes; decodeMemAccessHead inverts it", () => {
    const ga = 0xfeed_0000_1000n;
    const scratch = new Uint8Array(20).fill(0xaa).subarray(2, 18);
    const head = encodeMemAccessHead("BACKEND_MEM_READ", ga, 4096, scratch);
    assert.equal(head, scratch, "written in place");
    assert.deepEqual(head, encodeMemAccessHead("BACKEND_MEM_READ", ga, 4096));
    assert.equal(scratch.buffer.byteLength, 20);
    assert.deepEqual(
      [...new Uint8Array(scratch.buffer, 0, 2), ...new Uint8Array(scratch.buffer, 18, 2)],
      [0xaa, 0xaa, 0xaa, 0xaa],
      "nothing outside the 16 bytes",
    );
    assert.throws(() => encodeMemAccessHead("BACKEND_MEM_READ", ga, 1, new Uint8Array(15)), RangeError);
    assert.deepEqual(decodeMemAccessHead("BACKEND_MEM_READ", head), { guestAddress: ga, size: 4096 });
    assert.deepEqual(decodeMemAccessHead("BACKEND_MEM_READ", encodeMemAccessHead("BACKEND_MEM_READ", ga, 0)), { guestAddress: ga, size: 0 });
    const padded = head.slice();
    padded[13] = 1;
    rejects(() => decodeMemAccessHead("BACKEND_MEM_READ", padded), "NONZERO_PADDING");
    rejects(() => decodeMemAccessHead("BACKEND_MEM_READ", head.subarray(0, 15)), "BAD_SIZE");
    const big = head.slice();
    new DataView(big.buffer).setUint32(8, 65537, true);
    rejects(() => decodeMemAccessHead("BACKEND_MEM_READ", big), "BAD_VALUE");
    const wraps = encodeMemAccessHead("BACKEND_MEM_READ", U64_MAX, 0);
    new DataView(wraps.buffer).setUint32(8, 2, true);
    rejects(() => decodeMemAccessHead("BACKEND_MEM_READ", wraps), "OVERFLOW");
  });
});

describe("reserved payload bits and alignment", () => {
  test("vring file: bit 8 = no fd, bits 9-63 rejected", () => {
    const d = decodeMessage("frontend", frame(12, 1, payload(8, [[0, "u64", 0x105n]])));
    assert.deepEqual(d.value, { index: 5, noFd: true });
    rejects(() => decodeMessage("frontend", frame(12, 1, payload(8, [[0, "u64", 0x200n]]))), "BAD_VALUE");
    rejects(() => decodeMessage("frontend", frame(13, 1, payload(8, [[0, "u64", 1n << 63n]]))), "BAD_VALUE");
    rejects(() => encodeMessage("frontend", "SET_VRING_KICK", 1, { index: 256, noFd: false }), "BAD_VALUE");
  });
  test("vring addr: ring alignment and flag bits", () => {
    const addr = (desc: bigint, used: bigint, avail: bigint, flags = 0): Uint8Array =>
      frame(
        9,
        1,
        payload(40, [
          [4, "u32", flags],
          [8, "u64", desc],
          [16, "u64", used],
          [24, "u64", avail],
        ]),
      );
    assert.equal(decodeMessage("frontend", addr(0x1000n, 0x2004n, 0x3002n, 1)).name, "SET_VRING_ADDR");
    rejects(() => decodeMessage("frontend", addr(0x1000n, 0x1003n, 0x3000n)), "BAD_VALUE", /used ring 0x1003 not 4-byte aligned/u);
    rejects(() => decodeMessage("frontend", addr(0x1008n, 0x2000n, 0x3000n)), "BAD_VALUE", /16-byte/u);
    rejects(() => decodeMessage("frontend", addr(0x1000n, 0x2000n, 0x3001n)), "BAD_VALUE", /2-byte/u);
    rejects(() => decodeMessage("frontend", addr(0x1000n, 0x2000n, 0x3000n, 2)), "BAD_VALUE");
  });
  test("device-state reply bits", () => {
    rejects(() => decodeReply("frontend", frame(42, 5, payload(8, [[0, "u64", 0x200n]]))), "BAD_VALUE");
    assert.deepEqual(decodeReply("frontend", frame(42, 5, payload(8, [[0, "u64", 0x1ffn]]))).value, { error: 0xff, noFd: true });
  });
  test("split and packed vring base helpers", () => {
    assert.deepEqual(decodeSplitVringBase(0xffff), { nextAvailIdx: 0xffff });
    rejects(() => decodeSplitVringBase(0x1_0000), "BAD_VALUE");
    rejects(() => encodeSplitVringBase({ nextAvailIdx: 0x1_0000 }), "BAD_VALUE");
    const packed = { availIdx: 0x7fff, availWrap: true, usedIdx: 3, usedWrap: true };
    assert.equal(encodePackedVringBase(packed), 0x8003_ffff);
    assert.deepEqual(decodePackedVringBase(0x8003_ffff), packed);
    rejects(() => encodePackedVringBase({ ...packed, usedIdx: 0x8000 }), "BAD_VALUE");
  });
  test("codecs over a sub-view read only their own bytes", () => {
    const big = new Uint8Array(32).fill(0xff);
    big.set([1, 0, 0, 0, 2, 0, 0, 0], 8);
    assert.deepEqual(VringStateCodec.decode(new ByteReader(big.subarray(8, 16), "SET_VRING_NUM")), { index: 1, num: 2 });
    rejects(() => VringStateCodec.decode(new ByteReader(big.subarray(8, 15), "SET_VRING_NUM")), "TRUNCATED");
  });
});

describe("message table facts (docs/protocol.md#file-descriptors, docs/protocol.md#front-end-requests)", () => {
  test("the always-replied list", () => {
    const always = messageSpecs("frontend")
      .filter((s) => alwaysReplied(s))
      .map((s) => s.id);
    assert.deepEqual(always, [1, 11, 15, 17, 22, 24, 26, 28, 30, 31, 36, 40, 41, 42, 43, 44, 45]);
    const setLogBase = FrontendMessages.get("SET_LOG_BASE") ?? assert.fail();
    assert.ok(alwaysReplied(setLogBase, { logShmfd: true }) && !alwaysReplied(setLogBase));
    const memTable = FrontendMessages.get("SET_MEM_TABLE") ?? assert.fail();
    assert.ok(alwaysReplied(memTable, { postcopy: true }) && !alwaysReplied(memTable));
    for (const id of [11, 12]) assert.ok(alwaysReplied(tryMessageSpec("backend", id) ?? assert.fail()));
  });
  test("fd-carrying messages match rust-vmm's list", () => {
    const withFds = messageSpecs("frontend")
      .filter((s) => s.fds !== "none")
      .map((s) => s.name)
      .sort();
    assert.deepEqual(withFds, [
      "ADD_MEM_REG",
      "GPU_SET_SOCKET",
      "SET_BACKEND_REQ_FD",
      "SET_DEVICE_STATE_FD",
      "SET_INFLIGHT_FD",
      "SET_LOG_BASE",
      "SET_LOG_FD",
      "SET_MEM_TABLE",
      "SET_VRING_CALL",
      "SET_VRING_ERR",
      "SET_VRING_KICK",
    ]);
    const backendFds = messageSpecs("backend")
      .filter((s) => s.fds !== "none")
      .map((s) => s.name)
      .sort();
    assert.deepEqual(backendFds, ["BACKEND_SHMEM_MAP", "BACKEND_VRING_HOST_NOTIFIER_MSG"]);
    assert.deepEqual(expectedFdCount("zeroOrOne", { index: 0, noFd: true }), { min: 0, max: 0 });
    assert.deepEqual(expectedFdCount("zeroOrOne", { index: 0, noFd: false }), { min: 1, max: 1 });
    assert.deepEqual(expectedFdCount("zeroOrOne", { mmapSize: 0n }), { min: 0, max: 0 });
    assert.deepEqual(expectedFdCount("zeroOrOne", { mmapSize: 0x2000n }), { min: 1, max: 1 });
    assert.deepEqual(expectedFdCount("zeroOrOne", undefined), { min: 0, max: 1 });
    assert.deepEqual(expectedFdCount("perRegion", { regions: [1, 2, 3] }), { min: 3, max: 3 });
    assert.deepEqual(expectedFdCount("none"), { min: 0, max: 0 });
    assert.deepEqual(expectedFdCount("one"), { min: 1, max: 1 });
  });
  test("maxFdsFor: a transport fd policy from the table", () => {
    const fe = maxFdsFor("frontend");
    assert.deepEqual([fe(5, 0x9), fe(12, 0x1), fe(1, 0x1), fe(38, 0x1), fe(46, 0x1), fe(31, 0x5), fe(31, 0x1)], [8, 1, 0, 0, 0, 1, 0]);
    const be = maxFdsFor("backend");
    assert.deepEqual([be(9, 0x9), be(10, 0x9), be(8, 0x5), be(1000, 0x1)], [1, 0, 1, 0]);
    assert.equal(maxFdsFor("backend", CROSVM_LEGACY)(1000, 0x1), 1);
  });
  test("every front-end id 1-45 and back-end id 1-12 exists in the upstream dialect", () => {
    assert.deepEqual(
      messageSpecs("frontend").map((s) => s.id),
      Array.from({ length: 45 }, (_, i) => i + 1),
    );
    assert.deepEqual(
      messageSpecs("backend").map((s) => s.id),
      Array.from({ length: 12 }, (_, i) => i + 1),
    );
    assert.deepEqual(
      messageSpecs("backend", CROSVM_LEGACY).map((s) => s.id),
      [1, 2, 3, 4, 5, 6, 7, 8, 11, 12, 1000, 1001],
    );
  });
});
