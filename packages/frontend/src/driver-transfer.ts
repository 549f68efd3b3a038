/**
 * Guest buffers of a `DriverQueue`: the pinned ones drivers keep, and `DriverQueue.transfer`'s
 * body (one chain in freshly allocated guest buffers, copied in and out around the request).
 * @module
 */
import type { DriverBuffer } from "@vhostkit/virtqueue/driver";
import { translateRange, type GuestAddress, type GuestMemory } from "@vhostkit/regions";
import { asFrontendError, FrontendError } from "./errors.js";
import type { GuestAllocator } from "./guest-allocator.js";

/** Result of `DriverQueue.transfer`. */
export interface TransferResult {
  /** Bytes the device reported written (`used.len`). */
  readonly len: number;
  /** Copies of the device-writable buffers after completion, in the order requested. */
  readonly buffers: readonly Uint8Array[];
}

/**
 * Copies `readable` into new guest buffers, allocates `writableLens` bytes of device-writable ones
 * (filled with 0xff, so a status byte the device never wrote is recognisable), runs `submit` and
 * returns copies of the writable buffers. The buffers are freed afterwards, but kept when the
 * request failed on a failed queue (`failed()`), since the device may still write them.
 * @internal
 */
export async function transferChain(
  allocator: GuestAllocator,
  mem: GuestMemory,
  readable: readonly Uint8Array[],
  writableLens: readonly number[],
  submit: (r: readonly DriverBuffer[], w: readonly DriverBuffer[]) => Promise<number>,
  failed: () => boolean,
): Promise<TransferResult> {
  const allocs: GuestAddress[] = [];
  let ok = false;
  try {
    const r: DriverBuffer[] = [];
    for (const b of readable) {
      const a = allocator.alloc(b.byteLength);
      allocs.push(a);
      await mem.write(a, b);
      r.push({ addr: a, len: b.byteLength });
    }
    const w: DriverBuffer[] = [];
    for (const len of writableLens) {
      const a = allocator.alloc(len);
      allocs.push(a);
      for (const span of translateRange(mem, a, len, true)) span.bytes.fill(0xff);
      w.push({ addr: a, len });
    }
    const len = await submit(r, w);
    const buffers: Uint8Array[] = [];
    for (const b of w) {
      const out = new Uint8Array(b.len);
      await mem.read(b.addr as GuestAddress, out);
      buffers.push(out);
    }
    ok = true;
    return { len, buffers };
  } catch (err) {
    throw asFrontendError(err, "VIRTQUEUE");
  } finally {
    if (ok || !failed()) for (const a of allocs) allocator.free(a);
  }
}

/**
 * Allocates `len` bytes of guest RAM and returns its address with a direct view of it (`what`
 * names the owner in the error).
 * @throws FrontendError `OUT_OF_MEMORY`, `BAD_ARGUMENT` (the range is not one contiguous mapping).
 * @internal
 */
export function pinGuestBuffer(
  allocator: GuestAllocator,
  mem: GuestMemory,
  len: number,
  what: string,
): { readonly addr: GuestAddress; readonly bytes: Uint8Array } {
  const addr = allocator.alloc(len);
  const spans = translateRange(mem, addr, len, true);
  const first = spans[0];
  if (spans.length !== 1 || first === undefined || first.bytes.byteLength !== len) {
    allocator.free(addr);
    throw new FrontendError("BAD_ARGUMENT", `${what}: ${len} bytes of guest RAM are not one mapping`, { actual: len });
  }
  return { addr, bytes: first.bytes };
}
