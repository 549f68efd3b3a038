/**
 * Resubmitting the lists a packed queue's inflight region holds
 * (docs/protocol.md#inflight-tracking-and-reconnect): their recorded descriptors are laid out as a
 * private ring and popped through the queue's own walker before the real ring, so they are
 * validated as any available list is.
 *
 * @module
 */
import type { PackedVringBase } from "@vhostkit/wire";
import type { ChainBatch } from "./chain-batch.js";
import { VirtqueueError } from "./errors.js";
import type { PackedAvailWalker } from "./packed-avail.js";
import type { PackedInflight, PackedInflightRecovery } from "./packed-inflight.js";
import type { GuestErrorSink } from "./segment-cursor.js";

/**
 * @internal A queue's first start on `inflight` (its descriptor ring `ring16`, `size` descriptors,
 * started at `base`): where to resume and the lists to pop first (`replay`, when there are any),
 * or `undefined` when the region does not add up — the `BAD_INFLIGHT` error then went to `sink`
 * (the queue breaks).
 */
export function recoverPacked(
  inflight: PackedInflight,
  ring16: Uint16Array,
  size: number,
  base: PackedVringBase,
  sink: GuestErrorSink,
): { readonly base: PackedVringBase; readonly replay: PackedReplay | undefined } | undefined {
  try {
    const r = inflight.recover(ring16, size, base);
    return { base: r.base, replay: r.resubmit.length > 0 ? new PackedReplay(inflight, r, size) : undefined };
  } catch (e) {
    if (!(e instanceof VirtqueueError && e.code === "BAD_INFLIGHT")) throw e;
    sink.guestError(e);
    return undefined;
  }
}

/** @internal The recovered lists of one queue, popped oldest first. */
export class PackedReplay {
  readonly #inflight: PackedInflight;
  readonly #desc16: Uint16Array;
  readonly #desc32: Int32Array;
  readonly #heads: readonly number[];
  readonly #slots: number;
  /** Descriptors of the private ring popped so far: its avail offset (a list ending at the ring size would wrap the walker's own to 0). */
  #pos = 0;
  #done = 0;

  /** Lays out the lists of `recovery` (from `inflight`) for a ring of `size` descriptors. */
  constructor(inflight: PackedInflight, recovery: PackedInflightRecovery, size: number) {
    this.#inflight = inflight;
    this.#desc32 = new Int32Array(4 * size);
    this.#desc16 = new Uint16Array(this.#desc32.buffer);
    let at = 0;
    for (const h of recovery.resubmit) at += inflight.replay(h, this.#desc32, at);
    this.#heads = recovery.resubmit;
    this.#slots = at;
  }

  /** True once every recovered list was popped. */
  get finished(): boolean {
    return this.#done >= this.#heads.length;
  }

  /**
   * Pops up to `max` recovered lists into `batch` with `walker` (its ring views and avail position
   * are restored afterwards); each popped ID is tied to its head entry in the region. The lists'
   * ring descriptors are already counted as held by the device.
   */
  pop(walker: PackedAvailWalker, batch: ChainBatch, max: number): number {
    const a = walker;
    const [idx, wrap, d16, d32] = [a.availIdx, a.availWrap, a.desc16, a.desc32];
    a.desc16 = this.#desc16;
    a.desc32 = this.#desc32;
    a.availIdx = this.#pos;
    a.availWrap = 1;
    let n = 0;
    try {
      n = a.pop(batch, max, this.#slots - this.#pos);
      this.#pos += a.slots;
    } finally {
      [a.availIdx, a.availWrap, a.desc16, a.desc32] = [idx, wrap, d16, d32];
      a.slots = 0;
    }
    for (let k = 0; k < n; k++) this.#inflight.adopt(batch.heads[k] as number, this.#heads[this.#done + k] as number);
    this.#done += n;
    return n;
  }
}
