/**
 * fast-check arbitraries for every payload codec of @vhostkit/wire, keyed by codec object. Values
 * respect the syntax rules the codecs enforce (alignment, no u64 overflow, size bounds), so a
 * generated value always encodes.
 */
import fc from "fast-check";
import type { PayloadCodec } from "@vhostkit/wire";
import {
  CrosvmSharedMemoryRegionsCodec,
  CrosvmShmemMapCodec,
  CrosvmShmemUnmapCodec,
  DeviceConfigCodec,
  DeviceStateParamsCodec,
  DeviceStateReplyCodec,
  Empty,
  InflightCodec,
  IotlbCodec,
  LogBaseReplyCodec,
  LogCodec,
  MMapRequestCodec,
  MemReadReplyCodec,
  MemReadRequestCodec,
  MemWriteRequestCodec,
  MemoryRegionCodec,
  MemoryTableCodec,
  Opaque,
  SharedObjectCodec,
  SharedObjectReplyCodec,
  ShmemConfigCodec,
  SingleRegionCodec,
  U64,
  U64_MAX,
  VringAddrCodec,
  VringAreaCodec,
  VringFileCodec,
  VringStateCodec,
  makeShmemConfig,
} from "@vhostkit/wire";

/** `fc.record` with ordinary prototypes, as the decoders build them. */
const rec = <T>(model: { [K in keyof T]: fc.Arbitrary<T[K]> }): fc.Arbitrary<T> => fc.record(model, { noNullPrototype: true }) as fc.Arbitrary<T>;

const u8 = fc.integer({ min: 0, max: 0xff });
const u16 = fc.integer({ min: 0, max: 0xffff });
const u32 = fc.nat({ max: 0xffff_ffff });
const u64 = fc.bigInt({ min: 0n, max: U64_MAX });

/** A `[base, len]` pair with `base + len <= 2^64 - 1` and `len >= minLen`. */
function baseLen(minLen = 0n, maxLen = U64_MAX): fc.Arbitrary<readonly [bigint, bigint]> {
  return fc
    .oneof(fc.bigInt({ min: minLen, max: maxLen }), fc.bigInt({ min: minLen, max: minLen + 0x10000n < maxLen ? minLen + 0x10000n : maxLen }))
    .chain((len) => fc.tuple(fc.oneof(fc.bigInt({ min: 0n, max: U64_MAX - len }), fc.constant(U64_MAX - len)), fc.constant(len)));
}

const region = fc.tuple(baseLen(1n, 1n << 48n), u64, u64).map(([[guestPhysAddr, memorySize], a, b]) => ({
  guestPhysAddr,
  memorySize,
  userAddr: a > U64_MAX - memorySize ? U64_MAX - memorySize : a,
  mmapOffset: b > U64_MAX - memorySize ? U64_MAX - memorySize : b,
}));

const log = baseLen().map(([mmapOffset, mmapSize]) => ({ mmapSize, mmapOffset }));
const uuid = fc.uint8Array({ minLength: 16, maxLength: 16 }).map((b) => ({ uuid: b }));
const aligned = (a: bigint): fc.Arbitrary<bigint> => fc.bigInt({ min: 0n, max: U64_MAX / a }).map((x) => x * a);

const arbitraries = new Map<unknown, fc.Arbitrary<unknown>>([
  [Empty, fc.constant(undefined)],
  [U64, u64],
  [Opaque, fc.uint8Array({ maxLength: 300 })],
  [VringStateCodec, rec({ index: u32, num: u32 })],
  [VringFileCodec, rec({ index: u8, noFd: fc.boolean() })],
  [VringAddrCodec, rec({ index: u32, flags: fc.constantFrom(0, 1), descAddr: aligned(16n), usedAddr: aligned(4n), availAddr: aligned(2n), logAddr: u64 })],
  [VringAreaCodec, fc.tuple(u8, fc.boolean(), baseLen()).map(([index, noFd, [offset, size]]) => ({ index, noFd, size, offset }))],
  [MemoryRegionCodec, region],
  [MemoryTableCodec, fc.array(region, { maxLength: 8 }).map((regions) => ({ regions }))],
  [SingleRegionCodec, region],
  [LogCodec, log],
  [LogBaseReplyCodec, fc.oneof(u64, log)],
  [
    DeviceConfigCodec,
    fc
      .uint8Array({ maxLength: 256 })
      .chain((data) => rec({ offset: fc.nat({ max: Math.min(0xffff_ffff, 0x1_0000_0000 - data.byteLength) }), flags: u32, data: fc.constant(data) })),
  ],
  [
    IotlbCodec,
    fc
      .tuple(baseLen(), u64, fc.integer({ min: 0, max: 3 }), fc.integer({ min: 1, max: 4 }))
      .map(([[iova, size], uaddr, perm, type]) => ({ iova, size, uaddr, perm, type })),
  ],
  [InflightCodec, fc.tuple(log, u16, u16).map(([l, numQueues, queueSize]) => ({ ...l, numQueues, queueSize }))],
  [SharedObjectCodec, uuid],
  [SharedObjectReplyCodec, fc.option(uuid, { nil: undefined })],
  [DeviceStateParamsCodec, rec({ direction: u32, phase: u32 })],
  [DeviceStateReplyCodec, rec({ error: u8, noFd: fc.boolean() })],
  [
    MMapRequestCodec,
    fc.tuple(u8, baseLen(1n), u64, fc.constantFrom(0n, 1n)).map(([shmid, [shmOffset, len], fd, flags]) => ({
      shmid,
      fdOffset: fd > U64_MAX - len ? U64_MAX - len : fd,
      shmOffset,
      len,
      flags,
    })),
  ],
  [
    ShmemConfigCodec,
    fc
      .array(fc.oneof({ weight: 6, arbitrary: fc.constant(0n) }, { weight: 1, arbitrary: fc.bigInt({ min: 1n, max: U64_MAX }) }), {
        minLength: 256,
        maxLength: 256,
      })
      .map(makeShmemConfig),
  ],
  [
    CrosvmShmemMapCodec,
    fc.tuple(fc.integer({ min: 0, max: 3 }), u8, baseLen(1n), u64).map(([flags, shmid, [shmOffset, len], fd]) => ({
      flags,
      shmid,
      shmOffset,
      fdOffset: fd > U64_MAX - len ? U64_MAX - len : fd,
      len,
    })),
  ],
  [CrosvmShmemUnmapCodec, fc.tuple(u8, baseLen(1n)).map(([shmid, [shmOffset, len]]) => ({ shmid, shmOffset, len }))],
  [CrosvmSharedMemoryRegionsCodec, fc.array(rec({ id: u8, length: u64 }), { maxLength: 40 }).map((regions) => ({ regions }))],
  [MemReadRequestCodec, baseLen(1n, 65536n).map(([guestAddress, size]) => ({ guestAddress, size: Number(size) }))],
  [
    MemWriteRequestCodec,
    fc
      .uint8Array({ minLength: 1, maxLength: 2048 })
      .chain((data) => rec({ guestAddress: fc.bigInt({ min: 0n, max: U64_MAX - BigInt(data.byteLength) }), data: fc.constant(data) })),
  ],
  [
    MemReadReplyCodec,
    fc
      .uint8Array({ maxLength: 2048 })
      .chain((data) => rec({ guestAddress: fc.bigInt({ min: 0n, max: U64_MAX - BigInt(data.byteLength) }), data: fc.constant(data) })),
  ],
]);

/** The arbitrary for `codec`. @throws Error when a codec has none (a new codec needs one here). */
export function arbitraryFor(codec: PayloadCodec<unknown>): fc.Arbitrary<unknown> {
  const a = arbitraries.get(codec);
  if (a === undefined) throw new Error(`no arbitrary for codec ${codec.layout}`);
  return a;
}
