import type { ByteReader } from "./byte-reader.js";
import type { ByteWriter } from "./byte-writer.js";

/**
 * Codec for one vhost-user payload layout (docs/style.md#binary-codecs): pure `encode`/`decode` over a
 * bounds-checked {@link ByteWriter}/{@link ByteReader}, plus the size bounds the message table
 * checks against `header.size` **before** a single body byte is decoded (rust-vmm
 * `check_request_size`). All integers are host order, little-endian (docs/protocol.md#byte-order).
 *
 * @typeParam T - the typed value: u64 fields are `bigint`, u32/u16/u8 fields are `number`.
 */
export interface PayloadCodec<T> {
  /** Human name of the layout as in docs/protocol.md#payload-layouts, e.g. `"vring addr"`. */
  readonly layout: string;
  /** Exact payload size in bytes when the layout is fixed-size; absent for variable layouts. */
  readonly SIZE?: number;
  /** Smallest payload size in bytes the layout allows. */
  readonly minSize: number;
  /** Largest payload size in bytes the layout allows (before any transport cap). */
  readonly maxSize: number;
  /**
   * Payload size in bytes `value` encodes to.
   * @throws WireError `BAD_VALUE` when `value` cannot be encoded (e.g. too many regions).
   */
  sizeOf(value: T): number;
  /**
   * Write `value` at `writer.pos`; exactly `sizeOf(value)` bytes. Padding is written as zero.
   * @throws WireError `BAD_VALUE`, `OVERFLOW` when `value` breaks a syntax rule of the layout.
   */
  encode(writer: ByteWriter, value: T): void;
  /**
   * Read one value from `reader` (which spans exactly the payload). Variable data comes back as
   * zero-copy `subarray` views of the reader's bytes: valid as long as those bytes are not reused
   * (for a transport buffer: until the next receive); copy to keep.
   * @throws WireError `TRUNCATED`, `BAD_SIZE`, `BAD_VALUE`, `OVERFLOW`, `NONZERO_PADDING`.
   */
  decode(reader: ByteReader): T;
}

/** The value type `T` of a {@link PayloadCodec}. */
export type CodecValue<C> = C extends PayloadCodec<infer T> ? T : never;

/** The size members of a fixed-size {@link PayloadCodec} of `size` bytes (internal helper). */
export function fixedSize(layout: string, size: number): Pick<PayloadCodec<unknown>, "layout" | "SIZE" | "minSize" | "maxSize" | "sizeOf"> {
  return { layout, SIZE: size, minSize: size, maxSize: size, sizeOf: () => size };
}
