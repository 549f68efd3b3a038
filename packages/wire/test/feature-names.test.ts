/** Feature-bit names: plain tables, and protocol features per SHMEM dialect (docs/shmem.md#dialects). */
import assert from "node:assert/strict";
import { test } from "node:test";
import { Dialects, ProtocolFeature, VirtioFeature, featureNames, protocolFeatureNames } from "@vhostkit/wire";

test("featureNames: by bit number, unknown bits as bitN", () => {
  assert.deepEqual(featureNames(VirtioFeature.VERSION_1 | VirtioFeature.EVENT_IDX | (1n << 2n), VirtioFeature), ["bit2", "EVENT_IDX", "VERSION_1"]);
  assert.deepEqual(featureNames(0n, VirtioFeature), []);
});

test("protocolFeatureNames: the dialect's SHMEM bit is SHMEM, whatever bit it sits at", () => {
  const reply = ProtocolFeature.REPLY_ACK;
  assert.deepEqual(protocolFeatureNames(reply | Dialects.upstream.shmemFeature), ["REPLY_ACK", "SHMEM"], "upstream by default");
  // rust-vmm 0.16 puts SHMEM at bit 21, upstream's GPA_ADDRESSES.
  assert.equal(Dialects["rust-vmm-0.16"].shmemFeature, 1n << 21n);
  assert.deepEqual(protocolFeatureNames(reply | (1n << 21n), Dialects["rust-vmm-0.16"]), ["REPLY_ACK", "SHMEM"]);
  assert.deepEqual(protocolFeatureNames(reply | (1n << 21n), Dialects.upstream), ["REPLY_ACK", featureNames(1n << 21n, ProtocolFeature)[0]!]);
  // Upstream's SHMEM bit means nothing in the crosvm dialect.
  const upstreamShmem = Dialects.upstream.shmemFeature;
  assert.deepEqual(protocolFeatureNames(upstreamShmem, Dialects["crosvm-legacy"]), [`bit${upstreamShmem.toString(2).length - 1}`]);
});
