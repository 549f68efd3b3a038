/**
 * vhostkit MEM_READ / MEM_WRITE payloads (docs/shmem.md#extension-wire-format; a vhostkit extension, NOT upstream).
 * Request: 0:u64 guest_address, 8:u32 size (1..65536), 12:u32 padding (must be 0), 16: data
 * (MEM_WRITE only). MEM_READ reply: the 16-byte header echoed, then `size` data bytes (size 0 and
 * no data = failure). MEM_WRITE reply: u64 status (use {@link U64}).
 * @module
 */
import { ByteReader } from "../codec/byte-reader.js";
import type { ByteWriter } from "../codec/byte-writer.js";
import { checkNoOverflow, checkValue } from "../codec/checked-math.js";
import type { PayloadCodec } from "../codec/payload-codec.js";
import { fixedSize } from "../codec/payload-codec.js";
import { MEM_RW_HEADER_SIZE, MEM_RW_MAX_DATA, MEM_RW_MAX_PAYLOAD } from "../limits.js";

/** MEM_READ request (16 bytes): read `size` bytes of guest memory at `guestAddress`. */
export interface MemReadRequest {
  /** Guest physical address of the first byte. */
  readonly guestAddress: bigint;
  /** Bytes to read, 1..65536. */
  readonly size: number;
}

/**
 * MEM_WRITE request (16 + n bytes) or successful MEM_READ reply: `data` at `guestAddress`.
 * For a MEM_READ reply an empty `data` means failure (wire `size` 0).
 */
export interface MemData {
  /** Guest physical address of the first byte. */
  readonly guestAddress: bigint;
  /**
   * The bytes (wire `size` = `data.byteLength`). On decode a zero-copy `subarray` of the frame,
   * valid until the frame's buffer is reused (the next receive); copy to keep.
   */
  readonly data: Uint8Array;
}

function checkRange(request: string, guestAddress: bigint, size: number, allowZero: boolean): void {
  checkValue(
    Number.isInteger(size) && size >= (allowZero ? 0 : 1) && size <= MEM_RW_MAX_DATA,
    request,
    () => `size ${size} not in ${allowZero ? 0 : 1}..${MEM_RW_MAX_DATA}`,
    size,
  );
  checkNoOverflow(request, guestAddress, BigInt(size), "guest_address + size");
}

/**
 * Flag bit 0 of the head's last u32 in revision 2 of the extension (the shared data buffer
 * negotiated, docs/shmem.md#shared-data-buffer-revision-2): the data is in the shared buffer at
 * offset 0, not in the message. In revision 1 that u32 is padding and must be 0.
 */
export const MEM_RW_FLAG_IN_BUFFER = 1;

function writeHead(w: ByteWriter, guestAddress: bigint, size: number): void {
  w.u64(guestAddress);
  w.u32(size);
  w.u32(0);
}

function readHead(r: ByteReader, allowZero: boolean): { guestAddress: bigint; size: number } {
  const guestAddress = r.u64();
  const size = r.u32();
  r.zeros(4);
  checkRange(r.request, guestAddress, size, allowZero);
  return { guestAddress, size };
}

/**
 * MEM_READ request codec (exactly 16 bytes).
 * @throws WireError `BAD_VALUE` (size 0 or > 65536), `NONZERO_PADDING`, `OVERFLOW` (address + size).
 */
export const MemReadRequestCodec: PayloadCodec<MemReadRequest> = {
  ...fixedSize("mem read request", MEM_RW_HEADER_SIZE),
  encode(w, v) {
    checkRange(w.request, v.guestAddress, v.size, false);
    writeHead(w, v.guestAddress, v.size);
  },
  decode: (r) => readHead(r, false),
};

function memDataCodec(layout: string, allowEmpty: boolean): PayloadCodec<MemData> {
  return {
    layout,
    minSize: MEM_RW_HEADER_SIZE + (allowEmpty ? 0 : 1),
    maxSize: MEM_RW_MAX_PAYLOAD,
    sizeOf: (v) => MEM_RW_HEADER_SIZE + v.data.byteLength,
    encode(w, v) {
      checkRange(w.request, v.guestAddress, v.data.byteLength, allowEmpty);
      writeHead(w, v.guestAddress, v.data.byteLength);
      w.raw(v.data);
    },
    decode(r) {
      const head = readHead(r, allowEmpty);
      r.requireLength([MEM_RW_HEADER_SIZE + head.size], `size field ${head.size}`);
      return { guestAddress: head.guestAddress, data: r.bytesView(head.size) };
    },
  };
}

/**
 * MEM_WRITE request codec (16 + size bytes, size 1..65536; header size must equal 16 + size).
 * @throws WireError `BAD_VALUE`, `BAD_SIZE`, `NONZERO_PADDING`, `OVERFLOW`.
 */
export const MemWriteRequestCodec: PayloadCodec<MemData> = memDataCodec("mem write request", false);

/**
 * MEM_READ reply codec: 16 + size bytes (success) or 16 bytes with size 0 (failure, empty `data`).
 * @throws WireError `BAD_VALUE`, `BAD_SIZE`, `NONZERO_PADDING`, `OVERFLOW`.
 */
export const MemReadReplyCodec: PayloadCodec<MemData> = memDataCodec("mem read reply", true);

/**
 * The 16-byte head of a MEM_READ request, a MEM_WRITE request or a MEM_READ reply (guest_address,
 * size, zero padding), checked like the codecs check it. For senders that pass the data as a
 * separate part (transport's `Endpoint.send` takes a payload in parts) rather than copying it into
 * one encoded frame first; the bytes are those the codecs produce.
 * @param request - the request name for errors, e.g. `"BACKEND_MEM_WRITE"`.
 * @param size - 1..65536, or 0 for a MEM_READ failure reply.
 * @param into - write the head into these 16 bytes (borrowed; for a sender that reuses one
 *   scratch head per message) instead of a new buffer.
 * @param flags - the last u32: 0 (padding, revision 1) or {@link MEM_RW_FLAG_IN_BUFFER} (revision 2).
 * @returns the head: `into`, or a new 16-byte buffer.
 * @throws WireError `BAD_VALUE` (size out of range), `OVERFLOW` (address + size wraps).
 * @throws RangeError when `into` is not 16 bytes long, or `flags` has a bit other than {@link MEM_RW_FLAG_IN_BUFFER}.
 */
export function encodeMemAccessHead(request: string, guestAddress: bigint, size: number, into?: Uint8Array, flags = 0): Uint8Array {
  checkRange(request, guestAddress, size, true);
  if (into !== undefined && into.byteLength !== MEM_RW_HEADER_SIZE)
    throw new RangeError(`mem access head needs ${MEM_RW_HEADER_SIZE} bytes, got ${into.byteLength}`);
  if ((flags & ~MEM_RW_FLAG_IN_BUFFER) !== 0) throw new RangeError(`mem access flags 0x${flags.toString(16)}: only bit 0 is defined`);
  const head = into ?? new Uint8Array(MEM_RW_HEADER_SIZE);
  const v = new DataView(head.buffer, head.byteOffset, MEM_RW_HEADER_SIZE);
  v.setBigUint64(0, guestAddress, true);
  v.setUint32(8, size, true);
  v.setUint32(12, flags, true);
  return head;
}

/**
 * Decode a 16-byte MEM_READ / MEM_WRITE head on its own (guest_address, size, zero padding), as the
 * codecs check it, for receivers that took the data elsewhere (transport's `Endpoint.recvWith` can
 * receive a reply's data straight into its destination). The inverse of {@link encodeMemAccessHead}.
 * @param request - the request name for errors, e.g. `"BACKEND_MEM_READ"`.
 * @param head - exactly the 16 head bytes (borrowed).
 * @throws WireError `BAD_SIZE` (not 16 bytes), `NONZERO_PADDING`, `BAD_VALUE` (size > 65536),
 *   `OVERFLOW` (address + size wraps).
 */
export function decodeMemAccessHead(request: string, head: Uint8Array): { readonly guestAddress: bigint; readonly size: number } {
  const r = new ByteReader(head, request);
  r.requireLength([MEM_RW_HEADER_SIZE], "mem access head");
  return readHead(r, true);
}

/**
 * Decode a 16-byte head of revision 2 (the shared data buffer negotiated,
 * docs/shmem.md#shared-data-buffer-revision-2), where the last u32 holds flags: only
 * {@link MEM_RW_FLAG_IN_BUFFER} is defined, any other bit is refused. Otherwise as {@link decodeMemAccessHead}.
 * @param request - the request name for errors.
 * @param head - exactly the 16 head bytes (borrowed).
 * @throws WireError `BAD_SIZE` (not 16 bytes), `BAD_VALUE` (size > 65536, unknown flag bits),
 *   `OVERFLOW` (address + size wraps).
 */
export function decodeMemAccessHeadFlags(request: string, head: Uint8Array): { readonly guestAddress: bigint; readonly size: number; readonly flags: number } {
  const r = new ByteReader(head, request);
  r.requireLength([MEM_RW_HEADER_SIZE], "mem access head");
  const guestAddress = r.u64();
  const size = r.u32();
  const flags = r.u32();
  checkValue((flags & ~MEM_RW_FLAG_IN_BUFFER) === 0, request, () => `flags 0x${flags.toString(16)}: only bit 0 (data in the shared buffer) is defined`, flags);
  checkRange(request, guestAddress, size, true);
  return { guestAddress, size, flags };
}
