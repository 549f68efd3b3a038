/**
 * Assertions on what a device queue's pop returned, for fuzz and property tests of either ring
 * layout: every descriptor in bounds and validated, byte totals right, segments covering exactly
 * the chain.
 */
import assert from "node:assert/strict";
import type { ChainBatch, DeviceQueue } from "../../src/index.js";

const U64 = 1n << 64n;

/**
 * Chain `i` of `batch`: 1..`maxDescriptors` descriptors, each >= 1 byte and not wrapping past
 * 2^64, readable before writable when `strict`, totals equal to `readableBytes` / `writableBytes`
 * and at most 2^32 bytes.
 */
export function assertChain(batch: ChainBatch, i: number, strict: boolean, maxDescriptors: number): void {
  const count = batch.descriptorCount(i);
  assert.ok(count >= 1 && count <= maxDescriptors, `count ${count}`);
  let r = 0;
  let w = 0;
  let seenW = false;
  for (let j = batch.starts[i]!; j < batch.starts[i + 1]!; j++) {
    const len = batch.length(j);
    assert.ok(len >= 1 && batch.address(j) + BigInt(len) <= U64);
    if (batch.isWritable(j)) (w += len), (seenW = true);
    else {
      assert.ok(!(strict && seenW), "readable after writable");
      r += len;
    }
  }
  assert.equal(batch.readableBytes[i], r);
  assert.equal(batch.writableBytes[i], w);
  assert.ok(r + w <= 2 ** 32);
}

/** The segments of chain `i`: each >= 1 byte (host views exact), a bounded walk, covering the chain's bytes. */
export function assertSegments(queue: DeviceQueue, batch: ChainBatch, i: number): void {
  const cur = queue.segments(batch, i);
  let total = 0;
  let segs = 0;
  while (cur.next()) {
    assert.ok(cur.len >= 1);
    if (cur.kind === "host") assert.equal(cur.bytes.length, cur.len);
    total += cur.len;
    assert.ok(++segs <= 2 * batch.descriptorCount(i) + 4, "segment walk bounded");
  }
  assert.equal(total, batch.readableBytes[i]! + batch.writableBytes[i]!);
}
