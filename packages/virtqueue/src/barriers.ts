/**
 * Memory ordering for rings shared with another process (docs/virtqueue.md#memory-ordering, docs/virtqueue.md#notification-suppression).
 *
 * The guest driver (or the front-end) and this process access the same ring memory concurrently.
 * ECMAScript gives no ordering guarantee between plain typed-array accesses, and a JIT may reorder,
 * merge or hoist them (e.g. hoist a load of `avail.idx` out of a polling loop). `Atomics` operations
 * are sequentially consistent and the engines (V8, JavaScriptCore) compile them to hardware atomic
 * instructions whether or not the buffer is a `SharedArrayBuffer` — memory from `mmap` arrives as a
 * plain `ArrayBuffer` (koffi view), so that implementation property is what this package relies on.
 * Atomics are not free (docs/performance.md#atomics-on-ring-indexes: up to ~12% in Bun, 18–28% in Node), so they are used only at
 * the four points where the virtio ordering rules need a barrier, once per batch, never per
 * descriptor:
 *
 * | point (device side)                    | Linux / rust-vmm       | here                          |
 * |----------------------------------------|------------------------|-------------------------------|
 * | read avail.idx, then ring + descriptors| load-acquire (`rmb`)   | {@link loadAcquire16}         |
 * | write used elems, then used.idx        | store-release (`wmb`)  | {@link storeRelease16}        |
 * | publish used.idx, then read used_event / avail.flags | full fence (`mb`) | {@link storeRelease16} is seq-cst, then {@link loadAcquire16} |
 * | write avail_event, then re-read avail.idx | full fence (`mb`)   | {@link storeRelease16} + {@link loadAcquire16} |
 *
 * The driver side mirrors it: descriptors + ring slot, then avail.idx (release); avail.idx, then
 * avail_event / used.flags (full fence); used.idx, then used elements (acquire).
 *
 * Packed rings publish through descriptor flags instead of an index: the flags of a list's head
 * (driver) or of a batch's first used descriptor (device) take the store-release, the flags at the
 * position a side polls take the load-acquire (once per list: each list is published by its own
 * head), and the event suppression structures take the places of avail_event / used_event and the
 * flag words (DESIGN.md lists every point).
 *
 * Everything else (descriptor fields, ring slots, used elements, flags) is accessed with plain
 * typed-array operations: each such access is ordered by one of the operations above. Descriptor
 * fields are read exactly once per pop and copied into the {@link ChainBatch}, so a guest that
 * rewrites a descriptor after validation cannot change what the device later uses (no double fetch).
 *
 * @module
 */

/**
 * Load-acquire of a u16 ring index (`avail.idx`, `used.idx`, `used_event`, `avail_event`).
 *
 * SAFETY/ordering: `Atomics.load` is sequentially consistent, hence at least acquire: no later
 * plain load of ring slots or descriptors is performed before it, by the JIT or the CPU, so the
 * entries the other side published before its release store of this index are visible. It also
 * stops the JIT from caching the value across polls.
 */
export function loadAcquire16(view: Uint16Array, index: number): number {
  return Atomics.load(view, index);
}

/**
 * Store-release of a u16 ring index (`used.idx`, `avail.idx`, `avail_event`, `used_event`).
 *
 * SAFETY/ordering: `Atomics.store` is sequentially consistent: every earlier plain store (used
 * elements, descriptors, ring slots) becomes visible to the other process no later than this index,
 * and — being seq-cst, compiled to `xchg` / `mov; mfence` on x86-64 and `stlr` on arm64 paired with
 * the following `ldar` — no later atomic load (of `used_event`, `avail.idx`…) is satisfied before it.
 * That second property is the full barrier `vring_need_event` callers need (the race window of docs/virtqueue.md#notification-suppression).
 */
export function storeRelease16(view: Uint16Array, index: number, value: number): void {
  Atomics.store(view, index, value);
}

/**
 * Load-acquire of an aligned 32-bit ring word: a packed descriptor's last word (buffer ID in the
 * low half, flags in the high half), read at once.
 *
 * SAFETY/ordering: as {@link loadAcquire16}. The other side stores the buffer ID (plain) before
 * the flags (store-release, or a plain store behind an earlier release), both 16-bit halves of this
 * aligned word; an aligned 32-bit load is single-copy atomic on the hosts vhostkit runs on (x86-64,
 * arm64), so a load that returns the new flags returns the ID written before them.
 */
export function loadAcquire32(view: Int32Array | Uint32Array, index: number): number {
  return Atomics.load(view, index);
}
