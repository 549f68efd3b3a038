/**
 * Revision 2 of vhostkit's MEM_READ / MEM_WRITE (docs/shmem.md#shared-data-buffer-revision-2): the
 * feature bit just below the gate, and the head's flags word (bit 0: the data is in the shared buffer).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  MEM_RW_FLAG_IN_BUFFER,
  VHOSTKIT_MEM_RW,
  decodeMemAccessHead,
  decodeMemAccessHeadFlags,
  encodeMemAccessHead,
  isWireError,
  vhostkitMemRwBufferFeature,
  type WireErrorCode,
} from "@vhostkit/wire";

function rejects(fn: () => unknown, code: WireErrorCode): void {
  assert.throws(fn, (e: unknown) => isWireError(e) && e.code === code);
}

test("the shared-buffer bit is the one just below the MEM_RW gate; none for a gate below bit 33", () => {
  assert.equal(vhostkitMemRwBufferFeature(), VHOSTKIT_MEM_RW >> 1n);
  assert.equal(vhostkitMemRwBufferFeature(), 1n << 62n);
  assert.equal(vhostkitMemRwBufferFeature(40), 1n << 39n);
  assert.equal(vhostkitMemRwBufferFeature(33), 1n << 32n);
  assert.equal(vhostkitMemRwBufferFeature(32), 0n, "never among the low 32 bits");
  assert.equal(vhostkitMemRwBufferFeature(23), 0n, "bit 22 is SHMEM");
  assert.equal(vhostkitMemRwBufferFeature(0), 0n);
  assert.throws(() => vhostkitMemRwBufferFeature(64), RangeError);
});

test("a head with the in-buffer flag: bytes 12..15 hold 1, decoded by decodeMemAccessHeadFlags, refused by the revision 1 decoder", () => {
  const ga = 0x1_0000_2000n;
  const head = encodeMemAccessHead("BACKEND_MEM_READ", ga, 65536, undefined, MEM_RW_FLAG_IN_BUFFER);
  assert.deepEqual([...head], [0x00, 0x20, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00]);
  assert.deepEqual(decodeMemAccessHeadFlags("BACKEND_MEM_READ", head), { guestAddress: ga, size: 65536, flags: 1 });
  assert.deepEqual(decodeMemAccessHeadFlags("BACKEND_MEM_READ", encodeMemAccessHead("BACKEND_MEM_READ", ga, 4)), { guestAddress: ga, size: 4, flags: 0 });
  rejects(() => decodeMemAccessHead("BACKEND_MEM_READ", head), "NONZERO_PADDING");
});

test("unknown flag bits, sizes past 64 KiB and wrapping ranges are refused both ways", () => {
  assert.throws(() => encodeMemAccessHead("BACKEND_MEM_WRITE", 0n, 1, undefined, 2), RangeError);
  const head = encodeMemAccessHead("BACKEND_MEM_WRITE", 0x1000n, 8, undefined, MEM_RW_FLAG_IN_BUFFER);
  const v = new DataView(head.buffer);
  v.setUint32(12, 0x8000_0001, true);
  rejects(() => decodeMemAccessHeadFlags("BACKEND_MEM_WRITE", head), "BAD_VALUE");
  v.setUint32(12, 1, true);
  v.setUint32(8, 65537, true);
  rejects(() => decodeMemAccessHeadFlags("BACKEND_MEM_WRITE", head), "BAD_VALUE");
  v.setUint32(8, 2, true);
  v.setBigUint64(0, (1n << 64n) - 1n, true);
  rejects(() => decodeMemAccessHeadFlags("BACKEND_MEM_WRITE", head), "OVERFLOW");
  rejects(() => decodeMemAccessHeadFlags("BACKEND_MEM_WRITE", head.subarray(0, 12)), "BAD_SIZE");
});
