/**
 * The device as the Linux driver sees it (VIRGL and CONTEXT_INIT acknowledged): the vhostkit
 * capset, contexts as bookkeeping, host blobs only in a context of that capset (seeded from
 * blob_id), and an error response for every rendering command and every bad id or length. The
 * requests are encoded here from the VIRTIO layouts, independently of the device's decoder.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Resp, respHdr } from "../../device/src/gpu/protocol.js";
import { blobSeed, seedWord, VHOSTKIT_CAPSET_ID } from "../src/capset.js";
import type { ShmemEvent } from "../src/device.js";
import { MAX_CONTEXTS } from "../src/queues/contexts.js";
import { GpuFeature } from "../src/virtio-gpu.js";
import { Harness } from "./helpers/harness.js";

const LINUX = GpuFeature.VIRGL | GpuFeature.RESOURCE_BLOB | GpuFeature.CONTEXT_INIT;
const OK = Resp.OK_NODATA;
const OK_CAPSET_INFO = 0x1102;
const OK_CAPSET = 0x1103;

/** A request of `size` bytes: header (type, ctx_id) then u32 fields from byte 24. */
function req(type: number, ctxId: number, fields: readonly (number | bigint)[] = [], size = 32): Uint8Array {
  const b = new Uint8Array(size);
  const v = new DataView(b.buffer);
  v.setUint32(0, type, true);
  v.setUint32(16, ctxId, true);
  let o = 24;
  for (const f of fields) {
    if (typeof f === "bigint") {
      v.setBigUint64(o, f, true);
      o += 8;
    } else {
      v.setUint32(o, f, true);
      o += 4;
    }
  }
  return b;
}

const capsetInfo = (index: number) => req(0x0108, 0, [index]);
const capset = (id: number, version: number) => req(0x0109, 0, [id, version]);
function ctxCreate(ctxId: number, contextInit: number, name = "test", nlen = name.length): Uint8Array {
  const b = req(0x0200, ctxId, [nlen, contextInit], 96);
  b.set(new TextEncoder().encode(name).subarray(0, 64), 32);
  return b;
}
const ctxDestroy = (ctxId: number) => req(0x0201, ctxId, [], 24);
const ctxAttach = (ctxId: number, resourceId: number) => req(0x0202, ctxId, [resourceId]);
const ctxDetach = (ctxId: number, resourceId: number) => req(0x0203, ctxId, [resourceId]);
/** RESOURCE_CREATE_BLOB HOST3D USE_MAPPABLE, no entries. */
const createBlob = (ctxId: number, id: number, size: bigint, blobId = 0n) => req(0x010c, ctxId, [id, 2, 1, 0, blobId, size], 56);
const mapBlob = (id: number, offset: bigint) => req(0x0208, 0, [id, 0, offset], 40);
const unmapBlob = (id: number) => req(0x0209, 0, [id]);

async function expectResp(h: Harness, r: Uint8Array, want: number, respLen?: number): Promise<Uint8Array> {
  const out = await h.control(r, respLen);
  assert.equal(`0x${respHdr(out).type.toString(16)}`, `0x${want.toString(16)}`, `command 0x${respHdr(r).type.toString(16)}: ${h.events.at(-1)?.message ?? ""}`);
  return out;
}

test('GET_CAPSET_INFO / GET_CAPSET: one capset, id 30 version 1, 16 bytes "VHOSTKIT" v1 flags 3', async () => {
  using h = new Harness({ features: LINUX });
  const info = await expectResp(h, capsetInfo(0), OK_CAPSET_INFO);
  assert.equal(info.byteLength, 40);
  const iv = new DataView(info.buffer);
  assert.deepEqual([iv.getUint32(24, true), iv.getUint32(28, true), iv.getUint32(32, true)], [VHOSTKIT_CAPSET_ID, 1, 16]);
  await expectResp(h, capsetInfo(1), Resp.ERR_INVALID_PARAMETER);
  await expectResp(h, capsetInfo(0xffff_ffff), Resp.ERR_INVALID_PARAMETER);
  const data = await expectResp(h, capset(30, 1), OK_CAPSET);
  assert.equal(data.byteLength, 24 + 16);
  assert.equal(new TextDecoder().decode(data.subarray(24, 32)), "VHOSTKIT");
  assert.deepEqual([new DataView(data.buffer).getUint32(32, true), new DataView(data.buffer).getUint32(36, true)], [1, 3]);
  await expectResp(h, capset(30, 2), Resp.ERR_INVALID_PARAMETER);
  await expectResp(h, capset(30, 0), Resp.ERR_INVALID_PARAMETER);
  await expectResp(h, capset(1, 1), Resp.ERR_INVALID_PARAMETER, 24); // VIRGL's capset: not offered
  await expectResp(h, capset(30, 1).subarray(0, 31), Resp.ERR_UNSPEC);
});

test("contexts: create (default or vhostkit capset), attach/detach, destroy; bad ids, names and capsets refused", async () => {
  using h = new Harness({ features: LINUX });
  await expectResp(h, ctxCreate(1, 0, "modprobe"), OK);
  assert.deepEqual(h.events.at(-1), { queue: "control", type: 0x0200, resp: OK, ctxId: 1, capsetId: 0 });
  await expectResp(h, ctxCreate(2, VHOSTKIT_CAPSET_ID, "blob\u0001", 5), OK);
  assert.equal(h.events.at(-1)?.capsetId, VHOSTKIT_CAPSET_ID);
  assert.deepEqual(
    [...h.device.state.contexts.values()].map((c) => [c.id, c.capsetId, c.name]),
    [
      [1, 0, "modprobe"],
      [2, 30, "blob?"],
    ],
  );
  await expectResp(h, ctxCreate(2, 0), Resp.ERR_INVALID_CONTEXT_ID); // exists
  await expectResp(h, ctxCreate(0, 0), Resp.ERR_INVALID_CONTEXT_ID); // reserved
  await expectResp(h, ctxCreate(3, 1), Resp.ERR_INVALID_PARAMETER); // VIRGL's capset: not offered
  await expectResp(h, ctxCreate(3, 0x100 | VHOSTKIT_CAPSET_ID), Resp.ERR_INVALID_PARAMETER); // reserved context_init bits
  await expectResp(h, ctxCreate(3, 0, "x", 65), Resp.ERR_INVALID_PARAMETER); // debug name longer than 64
  await expectResp(h, ctxCreate(3, 0).subarray(0, 95), Resp.ERR_UNSPEC);
  assert.equal(h.device.state.contexts.size, 2);

  await expectResp(h, createBlob(2, 7, 4096n), OK);
  await expectResp(h, ctxAttach(2, 7), OK);
  assert.deepEqual([...(h.device.state.contexts.get(2)?.resources ?? [])], [7]);
  await expectResp(h, ctxAttach(9, 7), Resp.ERR_INVALID_CONTEXT_ID);
  await expectResp(h, ctxAttach(2, 8), Resp.ERR_INVALID_RESOURCE_ID);
  await expectResp(h, ctxDetach(1, 7), OK); // not attached there: a no-op
  await expectResp(h, ctxDetach(2, 7), OK);
  assert.equal(h.device.state.contexts.get(2)?.resources.size, 0);
  await expectResp(h, ctxAttach(1, 7), OK);
  await expectResp(h, req(0x0102, 0, [7]), OK); // RESOURCE_UNREF detaches it everywhere
  assert.equal(h.device.state.contexts.get(1)?.resources.size, 0);

  await expectResp(h, ctxDestroy(2), OK);
  await expectResp(h, ctxDestroy(2), Resp.ERR_INVALID_CONTEXT_ID);
  h.device.reset();
  assert.equal(h.device.state.contexts.size, 0, "a reset forgets every context");
});

test("contexts need VIRGL; a capset needs CONTEXT_INIT; at most MAX_CONTEXTS", async () => {
  using noVirgl = new Harness({ features: GpuFeature.RESOURCE_BLOB });
  await expectResp(noVirgl, ctxCreate(1, 0), Resp.ERR_UNSPEC);
  await expectResp(noVirgl, ctxDestroy(1), Resp.ERR_UNSPEC);
  await expectResp(noVirgl, capsetInfo(0), OK_CAPSET_INFO); // the capsets themselves are plain 2D commands
  using noInit = new Harness({ features: GpuFeature.VIRGL | GpuFeature.RESOURCE_BLOB });
  await expectResp(noInit, ctxCreate(1, VHOSTKIT_CAPSET_ID), Resp.ERR_INVALID_PARAMETER);
  await expectResp(noInit, ctxCreate(1, 0), OK);
  using many = new Harness({ features: LINUX });
  for (let id = 1; id <= MAX_CONTEXTS; id++) await expectResp(many, ctxCreate(id, 0, ""), OK, 24);
  await expectResp(many, ctxCreate(MAX_CONTEXTS + 1, 0), Resp.ERR_OUT_OF_MEMORY);
});

test("host blobs with VIRGL: only in a context of the vhostkit capset; blob_id seeds the host bytes; map and unmap reported", async () => {
  const shmem: ShmemEvent[] = [];
  using h = new Harness({ features: LINUX, shmSize: 1n << 20n, onShmem: (e) => void shmem.push(e) });
  await expectResp(h, ctxCreate(1, 0), OK);
  await expectResp(h, ctxCreate(2, VHOSTKIT_CAPSET_ID), OK);
  await expectResp(h, createBlob(0, 5, 8192n), Resp.ERR_INVALID_CONTEXT_ID);
  await expectResp(h, createBlob(9, 5, 8192n), Resp.ERR_INVALID_CONTEXT_ID);
  await expectResp(h, createBlob(1, 5, 8192n), Resp.ERR_INVALID_PARAMETER); // the default context has no host blobs
  assert.equal(h.device.state.resources.size, 0);
  const blobId = 0x0123_4567_89ab_cdefn;
  await expectResp(h, createBlob(2, 5, 8192n, blobId), OK);
  const host = h.device.blobBytes(5) as Uint8Array;
  const seed = blobSeed(blobId);
  assert.equal(seed, (0x0123_4567 ^ 0x89ab_cdef) >>> 0);
  const hv = new DataView(host.buffer, host.byteOffset, host.byteLength);
  for (const i of [0, 1, 1000, 2047]) assert.equal(hv.getUint32(i * 4, true), seedWord(seed, i), `word ${i}`);
  await expectResp(h, createBlob(2, 6, 4096n), OK);
  assert.ok(
    (h.device.blobBytes(6) as Uint8Array).every((b) => b === 0),
    "blob_id 0: zeroed",
  );

  await expectResp(h, mapBlob(5, 0x4000n), Resp.OK_MAP_INFO);
  await expectResp(h, unmapBlob(5), OK);
  assert.deepEqual(shmem, [
    { op: "map", offset: 0x4000n, len: 0x2000n },
    { op: "unmap", offset: 0x4000n, len: 0x2000n },
  ]);
  h.client.fail = true;
  await expectResp(h, mapBlob(5, 0x4000n), Resp.ERR_UNSPEC);
  assert.equal(shmem.length, 2, "a refused map is not reported");
});

test("rendering commands get an error response: unknown context → ERR_INVALID_CONTEXT_ID, else ERR_UNSPEC", async () => {
  using h = new Harness({ features: LINUX });
  await expectResp(h, ctxCreate(4, VHOSTKIT_CAPSET_ID), OK);
  const submit = req(0x0207, 4, [8], 40);
  await expectResp(h, submit, Resp.ERR_UNSPEC);
  assert.match(h.events.at(-1)?.message ?? "", /no rendering/);
  await expectResp(h, req(0x0207, 5, [8], 40), Resp.ERR_INVALID_CONTEXT_ID);
  await expectResp(h, req(0x0204, 4, [1, 2, 1, 0, 64, 64, 1, 1, 0, 0, 0, 0], 72), Resp.ERR_UNSPEC); // RESOURCE_CREATE_3D
  await expectResp(h, req(0x0205, 4, [], 72), Resp.ERR_UNSPEC); // TRANSFER_TO_HOST_3D
  await expectResp(h, req(0x0206, 4, [], 72), Resp.ERR_UNSPEC); // TRANSFER_FROM_HOST_3D
  await expectResp(h, req(0x0206, 4, [], 71), Resp.ERR_UNSPEC); // short
  // FENCE and fence_id are echoed on an error too, so a fenced submit never leaves the driver waiting.
  const fenced = submit.slice();
  new DataView(fenced.buffer).setUint32(4, 1, true);
  new DataView(fenced.buffer).setBigUint64(8, 77n, true);
  assert.deepEqual(respHdr(await expectResp(h, fenced, Resp.ERR_UNSPEC)), { type: Resp.ERR_UNSPEC, flags: 1, fenceId: 77n });
  assert.equal(h.device.state.resources.size, 0);
});
