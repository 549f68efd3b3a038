/**
 * The virtio-net driver's counters and its round of received frames (docs/virtio-net.md#the-receive-path).
 * @module
 */

/**
 * A round of received frames, read in place: frame `i` (`i < count`) is bytes `offsets[i]` to
 * `offsets[i] + lengths[i]` of `buffers[i]` — the receive buffer in guest memory, or a copy for a
 * frame merged from several buffers. Valid during the callback only: the buffers go back to the
 * device after it. The object and its arrays are reused; entries from `count` on are stale.
 */
export interface NetFrameBatch {
  /** Frames in this round. */
  readonly count: number;
  /** The buffer of each frame. */
  readonly buffers: readonly Uint8Array[];
  /** Where each frame starts in its buffer (after the virtio-net header). */
  readonly offsets: readonly number[];
  /** Each frame's length. */
  readonly lengths: readonly number[];
}

/** Counters of a `NetDriver`. */
export interface NetCounters {
  rxFrames: number;
  rxBytes: number;
  txFrames: number;
  txBytes: number;
}
