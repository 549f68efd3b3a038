/**
 * The one error type of `@vhostkit/virtqueue`.
 *
 * Guest-induced errors (a malformed ring or chain) mark the queue broken: the back-end then signals
 * the queue's err fd (docs/protocol.md#kick-call-and-err-fds) and stops processing it. Caller errors (a bad queue size,
 * pushing more used entries than the queue holds) are thrown without breaking anything.
 *
 * @module
 */
import { VhostUserError, isVhostUserError } from "@vhostkit/wire";
import type { ErrorDetail } from "@vhostkit/wire";

/**
 * Reasons a virtqueue operation fails. Codes marked *guest* are caused by ring contents the other
 * side wrote and break the queue; the others are configuration or caller errors.
 *
 * - `BAD_QUEUE_SIZE`: size not a power of two in 1..32768 (packed ring: not an integer in 1..32768).
 * - `MISALIGNED_RING`: a ring address violates the ring alignment (desc 16, avail 2, used 4; docs/virtqueue.md#ring-layout;
 *   packed ring: descriptor ring 16, event suppression areas 4), or a host view of a ring is not
 *   aligned for typed-array access.
 * - `RING_UNMAPPED`: a ring is not fully inside one mapped, contiguous region (or the used ring is
 *   read-only).
 * - `NOT_STARTED`: the queue is stopped (or was never started).
 * - `BROKEN`: the queue was marked broken by an earlier guest error; `cause` holds that error.
 * - `AVAIL_OVERRUN` (guest): avail.idx moved more than the queue size past the last seen index
 *   (packed ring: more descriptors made available than the ring has free, i.e. the driver reused
 *   descriptors the device has not marked used).
 * - `BAD_HEAD` / `BAD_NEXT` (guest): a descriptor index >= queue (or indirect table) size.
 * - `CHAIN_TOO_LONG` (guest): a chain has more descriptors than the queue (or table) size
 *   (a loop), or more than 2^32 bytes in total.
 * - `ZERO_LENGTH` (guest): a descriptor of length 0.
 * - `ADDRESS_WRAP` (guest): addr + len exceeds 2^64.
 * - `BAD_ORDER` (guest): a device-readable descriptor after a device-writable one.
 * - `INDIRECT_NOT_NEGOTIATED` (guest): INDIRECT used without VIRTIO_F_INDIRECT_DESC.
 * - `INDIRECT_WITH_NEXT` (guest): a descriptor with both INDIRECT and NEXT (packed ring: also an
 *   INDIRECT descriptor inside a NEXT-linked list).
 * - `NESTED_INDIRECT` (guest): INDIRECT inside an indirect table.
 * - `BAD_INDIRECT_LENGTH` (guest): indirect table length 0, not a multiple of 16, or too long.
 * - `INDIRECT_UNMAPPED` (guest): the indirect table is not in mapped memory.
 * - `READ_ONLY_BUFFER` (guest): a device-writable buffer lies in read-only memory.
 * - `BAD_BUFFER_ID` (guest, packed ring): a buffer ID >= queue size.
 * - `BUFFER_ID_IN_FLIGHT` (guest, packed ring): the driver made a buffer available under an ID the
 *   device has not returned yet.
 * - `BAD_WRAP` (guest, packed ring): descriptor flags whose AVAIL / USED bits contradict the wrap
 *   counter: the descriptor at the avail position marked used in this lap before the device took
 *   it, or a list member not available in its lap.
 * - `BAD_USED_ID`: a used element id >= queue size (device-side caller error; packed ring: also an
 *   id that is not in flight; driver side: the device returned an id that is not in flight).
 * - `BAD_INFLIGHT` (packed ring): the inflight region the front-end handed over does not add up
 *   (an index out of range, a list that loops or overlaps another, a buffer ID twice in flight, more
 *   descriptors in flight than the ring has); the queue breaks when it starts.
 * - `USED_OVERFLOW`: more used elements pending than the queue size.
 * - `RING_FULL`: driver side, not enough free descriptors or avail slots.
 * - `BAD_BUFFER`: driver side, an empty chain or a buffer with a bad length.
 * - `CHAIN_OVERRUN`: a copy helper was asked to move more bytes than the chain's segments hold.
 * - `USED_OVERRUN`: driver side, used.idx moved more than the queue size (a misbehaving device).
 * - `UNSUPPORTED_HOST`: a big-endian host (ring fields are little-endian; typed arrays are host-order).
 */
export type VirtqueueErrorCode =
  | "BAD_QUEUE_SIZE"
  | "MISALIGNED_RING"
  | "RING_UNMAPPED"
  | "NOT_STARTED"
  | "BROKEN"
  | "AVAIL_OVERRUN"
  | "BAD_HEAD"
  | "BAD_NEXT"
  | "CHAIN_TOO_LONG"
  | "ZERO_LENGTH"
  | "ADDRESS_WRAP"
  | "BAD_ORDER"
  | "INDIRECT_NOT_NEGOTIATED"
  | "INDIRECT_WITH_NEXT"
  | "NESTED_INDIRECT"
  | "BAD_INDIRECT_LENGTH"
  | "INDIRECT_UNMAPPED"
  | "READ_ONLY_BUFFER"
  | "BAD_BUFFER_ID"
  | "BUFFER_ID_IN_FLIGHT"
  | "BAD_WRAP"
  | "BAD_USED_ID"
  | "BAD_INFLIGHT"
  | "USED_OVERFLOW"
  | "RING_FULL"
  | "BAD_BUFFER"
  | "CHAIN_OVERRUN"
  | "USED_OVERRUN"
  | "UNSUPPORTED_HOST";

/**
 * Error thrown by every `@vhostkit/virtqueue` operation. `detail.offset` is the descriptor index
 * (or ring index) involved; `detail.expected` / `detail.actual` carry the bound and the value found.
 */
export class VirtqueueError extends VhostUserError<VirtqueueErrorCode> {}

/** True when `x` is a {@link VirtqueueError} (brand check plus class name; works across package copies). */
export function isVirtqueueError(x: unknown): x is VirtqueueError {
  return isVhostUserError(x) && x.name === "VirtqueueError";
}

/** @internal Shorthand used by the walkers: builds (does not throw) a coded error. */
export function vqError(code: VirtqueueErrorCode, message: string, detail: ErrorDetail = {}): VirtqueueError {
  return new VirtqueueError(code, message, detail);
}
