/**
 * Device logic with no sockets: every command's happy path and every bad command against real
 * split rings in an ArrayGuestMemory. Requests come from the GPU driver's own encoders
 * (apps/device/src/gpu/protocol.ts), written independently of the device's decoder.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Cmd, decodeDisplayInfo, decodeMapInfo, encode, FORMAT_BGRX, FORMAT_RGBA, Resp, respHdr, respName } from "../../device/src/gpu/protocol.js";
import { GpuDevice } from "../src/device.js";
import { GpuFeature } from "../src/virtio-gpu.js";
import { BackendError } from "@vhostkit/backend";
import { Harness } from "./helpers/harness.js";

const PAGE = 4096n;
const full = (w: number, h: number) => ({ x: 0, y: 0, width: w, height: h });

async function expectResp(h: Harness, req: Uint8Array, want: number, respLen?: number): Promise<Uint8Array> {
  const out = await h.control(req, respLen);
  const got = respHdr(out).type;
  assert.equal(respName(got), respName(want), `command 0x${respHdr(req).type.toString(16)}: ${h.events.at(-1)?.message ?? ""}`);
  return out;
}

/** A 2D resource `id` of w×h with its backing (one guest buffer, filled with `pixels`). */
async function make2d(h: Harness, id: number, w: number, hgt: number, format = FORMAT_BGRX, pixels?: Uint8Array): Promise<bigint> {
  await expectResp(h, encode.create2d(id, format, w, hgt), Resp.OK_NODATA);
  const addr = h.alloc(w * hgt * 4, pixels);
  await expectResp(h, encode.attachBacking(id, [{ addr, len: w * hgt * 4 }]), Resp.OK_NODATA);
  return addr;
}

test("config space, features, shared memory region and queues", () => {
  const d = new GpuDevice();
  assert.equal(d.queueCount, 2);
  assert.equal(d.features, GpuFeature.VIRGL | GpuFeature.EDID | GpuFeature.RESOURCE_BLOB | GpuFeature.CONTEXT_INIT | GpuFeature.BLOB_ALIGNMENT);
  assert.equal(new GpuDevice({ display: { width: 4096, height: 2160 } }).features & GpuFeature.EDID, 0n, "no EDID for a mode a detailed timing cannot hold");
  assert.deepEqual(d.shmemRegions(), [{ shmid: 1, size: 64n << 20n }]);
  const c = new DataView(d.getConfig(0, 20).buffer);
  assert.deepEqual(
    [c.getUint32(0, true), c.getUint32(4, true), c.getUint32(8, true), c.getUint32(12, true), c.getUint32(16, true)],
    [0, 0, 1, 1, 4096],
    "one scanout, one capset",
  );
  assert.throws(() => d.getConfig(16, 8), RangeError);
  d.setConfig(0, Uint8Array.of(0xff, 0xff, 0xff, 0xff)); // events_read is read-only: ignored
  d.setConfig(8, Uint8Array.of(9, 0, 0, 0)); // so is num_scanouts
  assert.deepEqual([...d.getConfig(0, 12)], [0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]);
  d.setConfig(4, new Uint8Array([1, 0, 0, 0]));
  d.setConfig(0, new Uint8Array(20)); // the whole struct written back, as front-ends do
  assert.throws(() => d.setConfig(6, new Uint8Array(4)), RangeError, "a write splitting events_clear");
  assert.throws(() => d.setConfig(20, new Uint8Array(8)), RangeError, "past the config");
  assert.deepEqual(new GpuDevice({ shmSize: 1n << 20n }).shmemRegions(), [{ shmid: 1, size: 1n << 20n }]);
  assert.throws(() => new GpuDevice({ shmSize: 3n << 20n }), RangeError, "the region must be a power of two");
  assert.throws(() => new GpuDevice({ numScanouts: 17 }), RangeError);
});

test("GET_DISPLAY_INFO: 408-byte OK_DISPLAY_INFO with the mode of scanout 0; FENCE and fence_id echoed", async () => {
  using h = new Harness({ display: { width: 320, height: 200 } });
  const out = await expectResp(h, encode.getDisplayInfo({ flags: 1, fenceId: 0x1234_5678_9abcn }), Resp.OK_DISPLAY_INFO, 512);
  assert.equal(out.byteLength, 408);
  assert.deepEqual(respHdr(out), { type: Resp.OK_DISPLAY_INFO, flags: 1, fenceId: 0x1234_5678_9abcn });
  assert.deepEqual(decodeDisplayInfo(out), [{ scanoutId: 0, enabled: true, rect: full(320, 200) }]);
  // A response buffer shorter than the reply gets the part that fits.
  assert.equal((await h.control(encode.getDisplayInfo(), 24)).byteLength, 24);
});

test("2D: create, attach backing (split entries, request split over descriptors), transfer, scanout, flush renders the frame", async () => {
  using h = new Harness();
  await expectResp(h, encode.create2d(7, FORMAT_BGRX, 4, 2), Resp.OK_NODATA);
  // Pixels in guest RAM, in two backing entries of 12 and 20 bytes.
  const px = new Uint8Array(32);
  for (let i = 0; i < 8; i++) px.set([i, 0x10 + i, 0x20 + i, 0x99], i * 4); // B, G, R, X
  const a = h.alloc(12, px.subarray(0, 12));
  const b = h.alloc(20, px.subarray(12));
  const attach = encode.attachBacking(7, [
    { addr: a, len: 12 },
    { addr: b, len: 20 },
  ]);
  assert.equal(respHdr(await h.submit(0, [attach.subarray(0, 32), attach.subarray(32)])).type, Resp.OK_NODATA);
  await expectResp(h, encode.transfer(7, full(4, 2), 0n), Resp.OK_NODATA);
  await expectResp(h, encode.setScanout(0, 7, full(4, 2)), Resp.OK_NODATA);
  await expectResp(h, encode.flush(7, full(4, 2)), Resp.OK_NODATA);
  assert.equal(h.frames.length, 1);
  const f = h.frames[0]!;
  assert.deepEqual([f.width, f.height, f.resourceId], [4, 2, 7]);
  for (let i = 0; i < 8; i++) assert.deepEqual([...f.rgba.subarray(i * 4, i * 4 + 4)], [0x20 + i, 0x10 + i, i, 255], `pixel ${i}`);
  // A partial transfer: 1×1 at (2,1) from backing offset y*stride + x*4 (as the Linux driver sends).
  h.ram(b, 20).set([1, 2, 3, 4], 12); // backing offset 24 (pixel 6) is offset 12 of the second entry
  await expectResp(h, encode.transfer(7, { x: 2, y: 1, width: 1, height: 1 }, 24n), Resp.OK_NODATA);
  await expectResp(h, encode.flush(7, { x: 2, y: 1, width: 1, height: 1 }), Resp.OK_NODATA);
  assert.deepEqual([...h.frames[1]!.rgba.subarray(24, 28)], [3, 2, 1, 255]);
  await expectResp(h, encode.detachBacking(7), Resp.OK_NODATA);
  await expectResp(h, encode.transfer(7, full(4, 2), 0n), Resp.ERR_UNSPEC);
  await expectResp(h, encode.unref(7), Resp.OK_NODATA);
  assert.equal(h.device.state.scanouts[0], undefined, "unref disables the scanout showing it");
  assert.equal(h.device.state.hostBytes, 0n);
});

test("every pixel format converts to RGBA by its memory byte order", async () => {
  using h = new Harness();
  await make2d(h, 1, 1, 1, FORMAT_RGBA, new Uint8Array([10, 20, 30, 40]));
  await expectResp(h, encode.transfer(1, full(1, 1), 0n), Resp.OK_NODATA);
  await expectResp(h, encode.setScanout(0, 1, full(1, 1)), Resp.OK_NODATA);
  await expectResp(h, encode.flush(1, full(1, 1)), Resp.OK_NODATA);
  assert.deepEqual([...h.frames[0]!.rgba], [10, 20, 30, 40]);
});

test("host blob: create, MAP_BLOB → SHMEM_MAP of the memfd into shmid 1 at the driver's offset, OK_MAP_INFO after the ack, blob scanout, UNMAP_BLOB → SHMEM_UNMAP", async () => {
  using h = new Harness();
  await expectResp(h, encode.createBlob(5, 10_000n), Resp.OK_NODATA);
  const mapped = await expectResp(h, encode.mapBlob(5, 0x20000n), Resp.OK_MAP_INFO);
  assert.equal(mapped.byteLength, 32);
  assert.equal(decodeMapInfo(mapped) & 0xf, 1, "map_info: CACHED");
  assert.equal(h.client.calls.length, 1);
  const call = h.client.calls[0]!;
  assert.equal(call.kind, "map");
  assert.deepEqual(call.args, { shmid: 1, shmOffset: 0x20000n, len: 3n * PAGE, writable: true }, "length rounded up to pages");
  assert.ok(call.kind === "map" && call.fd >= 0);
  assert.deepEqual(h.device.state.mappings(), [{ resourceId: 5, offset: 0x20000n, len: 3n * PAGE }]);
  // Pixels the driver wrote through the region land in the back-end's view of the same pages.
  const bytes = h.device.blobBytes(5)!;
  assert.equal(bytes.byteLength, 10_000);
  for (let i = 0; i < 16; i++) bytes.set([0, 0, 0xff, 0, 0, 0xff, 0, 0], i * 8); // red, green in BGRX
  await expectResp(h, encode.setScanoutBlob(0, 5, { rect: full(4, 4), width: 4, height: 4, format: FORMAT_BGRX, stride: 32, offset: 0 }), Resp.OK_NODATA);
  await expectResp(h, encode.flush(5, full(4, 4)), Resp.OK_NODATA);
  const f = h.frames[0]!;
  assert.deepEqual([f.width, f.height], [4, 4]);
  assert.deepEqual([...f.rgba.subarray(0, 8)], [255, 0, 0, 255, 0, 255, 0, 255]);
  await expectResp(h, encode.unmapBlob(5), Resp.OK_NODATA);
  assert.deepEqual(h.client.calls[1], { kind: "unmap", args: { shmid: 1, shmOffset: 0x20000n, len: 3n * PAGE } });
  assert.deepEqual(h.device.state.mappings(), []);
  await expectResp(h, encode.mapBlob(5, 0n), Resp.OK_MAP_INFO, 64); // re-map elsewhere
  await expectResp(h, encode.unref(5), Resp.OK_NODATA);
  assert.equal(h.client.calls.at(-1)?.kind, "unmap", "unref of a mapped blob unmaps it first");
  assert.equal(h.device.blobBytes(5), undefined);
});

test("bad resource ids → ERR_INVALID_RESOURCE_ID", async () => {
  using h = new Harness();
  await make2d(h, 1, 2, 2);
  const rect = full(1, 1);
  for (const req of [
    encode.create2d(0, FORMAT_BGRX, 1, 1),
    encode.create2d(1, FORMAT_BGRX, 1, 1),
    encode.unref(9),
    encode.setScanout(0, 9, rect),
    encode.flush(9, rect),
    encode.transfer(9, rect, 0n),
    encode.attachBacking(9, [{ addr: 0x10000n, len: 16 }]),
    encode.detachBacking(9),
    encode.createBlob(0, PAGE),
    encode.createBlob(1, PAGE),
    encode.mapBlob(9, 0n),
    encode.unmapBlob(9),
    encode.setScanoutBlob(0, 9, { rect, width: 1, height: 1, format: FORMAT_BGRX, stride: 4 }),
  ]) {
    await expectResp(h, req, Resp.ERR_INVALID_RESOURCE_ID);
  }
  assert.equal(h.device.state.resources.size, 1);
});

test("out-of-range rects, bad scanouts, bad formats and sizes → ERR_INVALID_PARAMETER / ERR_INVALID_SCANOUT_ID", async () => {
  using h = new Harness();
  await make2d(h, 1, 4, 4);
  await expectResp(h, encode.createBlob(2, PAGE), Resp.OK_NODATA);
  const P = Resp.ERR_INVALID_PARAMETER;
  for (const [req, want] of [
    [encode.setScanout(0, 1, { x: 2, y: 0, width: 3, height: 4 }), P],
    [encode.setScanout(0, 1, { x: 0, y: 0, width: 0, height: 4 }), P],
    [encode.setScanout(0, 1, { x: 0xffff_ffff, y: 0, width: 2, height: 1 }), P],
    [encode.setScanout(1, 1, full(4, 4)), Resp.ERR_INVALID_SCANOUT_ID],
    [encode.setScanout(0, 2, full(1, 1)), P], // a blob needs SET_SCANOUT_BLOB
    [encode.flush(1, { x: 0, y: 3, width: 4, height: 2 }), P],
    [encode.transfer(1, { x: 4, y: 0, width: 1, height: 1 }, 0n), P],
    [encode.transfer(1, full(4, 4), 4n), P], // backing too short for offset + rect
    [encode.transfer(2, full(1, 1), 0n), P],
    [encode.create2d(3, 999, 4, 4), P],
    [encode.create2d(3, FORMAT_BGRX, 0, 4), P],
    [encode.create2d(3, FORMAT_BGRX, 16385, 1), P],
    [encode.setScanoutBlob(0, 2, { rect: full(32, 33), width: 32, height: 33, format: FORMAT_BGRX, stride: 128 }), P], // one row past the blob
    [encode.setScanoutBlob(0, 2, { rect: full(4, 4), width: 4, height: 4, format: FORMAT_BGRX, stride: 8 }), P], // stride < width*4
    [encode.setScanoutBlob(0, 2, { rect: full(8, 4), width: 4, height: 4, format: FORMAT_BGRX, stride: 16 }), P],
    [encode.setScanoutBlob(0, 2, { rect: full(4, 4), width: 4, height: 4, format: 7, stride: 16 }), P],
    [encode.setScanoutBlob(0, 1, { rect: full(4, 4), width: 4, height: 4, format: FORMAT_BGRX, stride: 16 }), P], // not a blob
    [encode.setScanoutBlob(3, 2, { rect: full(4, 4), width: 4, height: 4, format: FORMAT_BGRX, stride: 16 }), Resp.ERR_INVALID_SCANOUT_ID],
  ] as const) {
    await expectResp(h, req, want);
  }
  assert.deepEqual(h.device.state.scanouts, [undefined]);
  await expectResp(h, encode.setScanout(0, 0, full(0, 0)), Resp.OK_NODATA, 24); // resource 0 disables, rect ignored
});

test("bad backing → ERR_INVALID_PARAMETER (empty, wrapping, outside guest RAM, too many entries), double attach → ERR_UNSPEC", async () => {
  using h = new Harness();
  await expectResp(h, encode.create2d(1, FORMAT_BGRX, 4, 4), Resp.OK_NODATA);
  await expectResp(h, encode.createBlob(2, PAGE), Resp.OK_NODATA);
  const P = Resp.ERR_INVALID_PARAMETER;
  await expectResp(h, encode.attachBacking(1, [{ addr: 0x10000n, len: 0 }]), P);
  await expectResp(h, encode.attachBacking(1, [{ addr: 0xffff_ffff_ffff_fff0n, len: 64 }]), P);
  await expectResp(h, encode.attachBacking(1, [{ addr: 0x7f_0000n, len: 0x20_0000 }]), P, 24);
  await expectResp(h, encode.attachBacking(1, [{ addr: 0x1_0000_0000n, len: 64 }]), P);
  await expectResp(h, encode.attachBacking(1, []), P);
  const many = encode.attachBacking(1, [{ addr: 0x10000n, len: 64 }]);
  new DataView(many.buffer).setUint32(28, 16385, true);
  await expectResp(h, many, P);
  await expectResp(h, encode.attachBacking(2, [{ addr: 0x10000n, len: 64 }]), P); // a host blob has no guest backing
  await expectResp(h, encode.detachBacking(2), P);
  await expectResp(h, encode.detachBacking(1), Resp.ERR_UNSPEC);
  await expectResp(h, encode.attachBacking(1, [{ addr: 0x10000n, len: 64 }]), Resp.OK_NODATA);
  await expectResp(h, encode.attachBacking(1, [{ addr: 0x10000n, len: 64 }]), Resp.ERR_UNSPEC);
});

test("blob create refusals: too large → ERR_OUT_OF_MEMORY, bad blob_mem / flags / entries / size → ERR_INVALID_PARAMETER, RESOURCE_BLOB not acked → ERR_UNSPEC", async () => {
  using h = new Harness({ shmSize: 1n << 20n, maxHostBytes: 2n << 20n });
  const P = Resp.ERR_INVALID_PARAMETER;
  await expectResp(h, encode.createBlob(1, (1n << 20n) + 1n), Resp.ERR_OUT_OF_MEMORY);
  await expectResp(h, encode.createBlob(1, 1n << 62n), Resp.ERR_OUT_OF_MEMORY);
  await expectResp(h, encode.createBlob(1, 0n), P);
  await expectResp(h, encode.createBlob(1, PAGE, { blobMem: 1 }), P);
  await expectResp(h, encode.createBlob(1, PAGE, { blobMem: 3 }), P);
  await expectResp(h, encode.createBlob(1, PAGE, { flags: 0x8 }), P);
  const withEntries = encode.createBlob(1, PAGE);
  new DataView(withEntries.buffer).setUint32(36, 1, true);
  await expectResp(h, withEntries, P);
  // The host memory cap: two 1 MiB blobs fit, the third does not.
  await expectResp(h, encode.createBlob(1, 1n << 20n), Resp.OK_NODATA);
  await expectResp(h, encode.createBlob(2, 1n << 20n), Resp.OK_NODATA);
  await expectResp(h, encode.createBlob(3, PAGE), Resp.ERR_OUT_OF_MEMORY);
  await expectResp(h, encode.create2d(3, FORMAT_BGRX, 64, 64), Resp.ERR_OUT_OF_MEMORY);
  using noBlob = new Harness({ features: 0n });
  await expectResp(noBlob, encode.createBlob(1, PAGE), Resp.ERR_UNSPEC);
});

test("MAP_BLOB refusals: unaligned, out of the region, overlapping, mapped twice, not mappable, not a blob, front-end refusal; UNMAP of an unmapped blob", async () => {
  using h = new Harness({ shmSize: 1n << 20n });
  await expectResp(h, encode.createBlob(1, 2n * PAGE), Resp.OK_NODATA);
  await expectResp(h, encode.createBlob(2, 2n * PAGE), Resp.OK_NODATA);
  await expectResp(h, encode.createBlob(3, PAGE, { flags: 0 }), Resp.OK_NODATA);
  await expectResp(h, encode.create2d(4, FORMAT_BGRX, 1, 1), Resp.OK_NODATA);
  const P = Resp.ERR_INVALID_PARAMETER;
  await expectResp(h, encode.mapBlob(1, 0x800n), P); // not page-aligned (blob_alignment)
  await expectResp(h, encode.mapBlob(1, (1n << 20n) - PAGE), P); // runs past the end
  await expectResp(h, encode.mapBlob(1, 0xffff_ffff_ffff_f000n), P); // wraps
  await expectResp(h, encode.unmapBlob(1), P);
  await expectResp(h, encode.mapBlob(1, 0x4000n), Resp.OK_MAP_INFO, 32);
  await expectResp(h, encode.mapBlob(1, 0x8000n), P); // already mapped
  await expectResp(h, encode.mapBlob(2, 0x5000n), P); // overlaps blob 1's second page
  await expectResp(h, encode.mapBlob(2, 0x3000n), P); // overlaps blob 1's first page
  await expectResp(h, encode.mapBlob(3, 0x10000n), P); // created without USE_MAPPABLE
  await expectResp(h, encode.mapBlob(4, 0x10000n), P); // a 2D resource
  await expectResp(h, encode.unmapBlob(4), P);
  assert.equal(h.client.calls.length, 1, "refused maps never reach the front-end");
  h.client.fail = true;
  await expectResp(h, encode.mapBlob(2, 0x6000n), Resp.ERR_UNSPEC); // the front-end said no
  assert.deepEqual(
    h.device.state.mappings().map((m) => m.resourceId),
    [1],
    "a refused map leaves nothing behind",
  );
  await expectResp(h, encode.mapBlob(2, 0x6000n), Resp.OK_MAP_INFO, 32);
  h.client.fail = true;
  await expectResp(h, encode.unmapBlob(2), Resp.ERR_UNSPEC);
  assert.equal(h.device.state.mappings().length, 2, "a refused unmap keeps the mapping");
});

test("maps only while running; stop keeps the mappings and sends nothing; reset frees every resource", async () => {
  using h = new Harness({ start: false });
  await expectResp(h, encode.createBlob(1, PAGE), Resp.OK_NODATA);
  await expectResp(h, encode.mapBlob(1, 0n), Resp.ERR_UNSPEC); // before DRIVER_OK
  assert.equal(h.client.calls.length, 0);
  h.start();
  await expectResp(h, encode.mapBlob(1, 0n), Resp.OK_MAP_INFO, 32);
  h.device.stop();
  assert.equal(h.device.running, false);
  assert.equal(h.device.state.mappings().length, 1, "the front-end keeps mappings across a stop (a pause); it drops them on reset");
  await expectResp(h, encode.createBlob(2, PAGE), Resp.OK_NODATA);
  await expectResp(h, encode.mapBlob(2, PAGE), Resp.ERR_UNSPEC); // stopped: no map may be sent
  await expectResp(h, encode.unmapBlob(1), Resp.ERR_UNSPEC); // nor an unmap; the mapping stays
  assert.equal(h.device.state.mappings().length, 1);
  assert.equal(h.client.calls.length, 1, "nothing sent after stop");
  h.start(); // resumed: the driver can unmap what it mapped before the pause
  await expectResp(h, encode.unmapBlob(1), Resp.OK_NODATA);
  assert.equal(h.client.calls.length, 2);
  await expectResp(h, encode.unref(1), Resp.OK_NODATA);
  await expectResp(h, encode.unref(2), Resp.OK_NODATA);
  await make2d(h, 2, 2, 2);
  await expectResp(h, encode.createBlob(3, PAGE), Resp.OK_NODATA);
  h.device.reset();
  assert.equal(h.device.state.resources.size, 0);
  assert.equal(h.device.state.hostBytes, 0n);
  // After reset RESOURCE_BLOB is no longer acknowledged until SET_FEATURES comes again.
  await expectResp(h, encode.createBlob(3, PAGE), Resp.ERR_UNSPEC);
});

test("a map abandoned by a stop stays reserved until an unmap settles it (the front-end may have applied it)", async () => {
  using h = new Harness();
  await expectResp(h, encode.createBlob(1, PAGE), Resp.OK_NODATA);
  h.client.fail = true;
  h.client.failWith = new BackendError("ABANDONED", "stopped while waiting");
  await expectResp(h, encode.mapBlob(1, 0n), Resp.ERR_UNSPEC);
  assert.deepEqual(h.device.state.mappings(), [{ resourceId: 1, offset: 0n, len: PAGE, uncertain: true }], "the range stays reserved");
  await expectResp(h, encode.createBlob(2, PAGE), Resp.OK_NODATA);
  await expectResp(h, encode.mapBlob(2, 0n), Resp.ERR_INVALID_PARAMETER); // overlaps the uncertain one
  // The front-end never applied it: it refuses the unmap, which settles the range as free.
  h.client.fail = true;
  h.client.failWith = new BackendError("REJECTED", "no such mapping");
  await expectResp(h, encode.unmapBlob(1), Resp.OK_NODATA);
  assert.deepEqual(h.device.state.mappings(), []);
  await expectResp(h, encode.mapBlob(2, 0n), Resp.OK_MAP_INFO, 32);
  // A certain mapping whose unmap is refused keeps its record (as before).
  h.client.fail = true;
  h.client.failWith = new BackendError("REJECTED", "refused");
  await expectResp(h, encode.unmapBlob(2), Resp.ERR_UNSPEC);
  assert.equal(h.device.state.mappings().length, 1);
});

test("unknown, 3D and capset commands, truncated requests → error responses", async () => {
  using h = new Harness();
  const U = Resp.ERR_UNSPEC;
  await expectResp(h, encode.create2d(1, FORMAT_BGRX, 1, 1).subarray(0, 39), U);
  await expectResp(h, encode.create2d(1, FORMAT_BGRX, 1, 1), Resp.OK_NODATA);
  await expectResp(h, encode.mapBlob(1, 0n).subarray(0, 32), U);
  await expectResp(h, encode.setScanoutBlob(0, 1, { rect: full(1, 1), width: 1, height: 1, format: FORMAT_BGRX, stride: 4 }).subarray(0, 95), U);
  const attach = encode.attachBacking(1, [
    { addr: 0x10000n, len: 4 },
    { addr: 0x10010n, len: 4 },
  ]);
  await expectResp(h, attach.subarray(0, 48 + 8), U); // the second entry is cut
  const short = await h.control(new Uint8Array(10));
  assert.deepEqual(respHdr(short), { type: U, flags: 0, fenceId: 0n });
  await expectResp(h, new Uint8Array(1), U);
  const type = (t: number) => {
    const b = new Uint8Array(128);
    new DataView(b.buffer).setUint32(0, t, true);
    return b;
  };
  await expectResp(h, type(0x0200), U); // CTX_CREATE: VIRGL not acked
  await expectResp(h, type(0x0207), U); // SUBMIT_3D
  await expectResp(h, type(0x0300), U); // a cursor command on controlq
  await expectResp(h, type(0xdead), U);
  const capsetInfo = type(0x0108);
  capsetInfo[24] = 1;
  await expectResp(h, capsetInfo, Resp.ERR_INVALID_PARAMETER); // GET_CAPSET_INFO: index 1 of 1 capset
  // No response buffer at all: the chain is returned with used.len 0.
  assert.equal((await h.control(encode.getDisplayInfo(), 0)).byteLength, 0);
  assert.equal(h.device.state.resources.size, 1);
});

test("cursorq: UPDATE/MOVE_CURSOR, no reply without a writable buffer, bad scanout/resource", async () => {
  using h = new Harness();
  await make2d(h, 9, 64, 64);
  await make2d(h, 8, 4, 4);
  assert.equal((await h.submit(1, [encode.cursor(Cmd.UPDATE_CURSOR, { scanoutId: 0, x: 10, y: 20, id: 9, hotX: 1, hotY: 2 })], 0)).byteLength, 0);
  assert.deepEqual(h.device.state.cursor, { resourceId: 9, scanoutId: 0, x: 10, y: 20, hotX: 1, hotY: 2 });
  assert.equal(respHdr(await h.submit(1, [encode.cursor(Cmd.MOVE_CURSOR, { scanoutId: 0, x: 30, y: 40 })], 24)).type, Resp.OK_NODATA);
  assert.deepEqual([h.device.state.cursor.x, h.device.state.cursor.y, h.device.state.cursor.resourceId], [30, 40, 9]);
  assert.equal(respHdr(await h.submit(1, [encode.cursor(Cmd.MOVE_CURSOR, { scanoutId: 4, x: 0, y: 0 })], 24)).type, Resp.ERR_INVALID_SCANOUT_ID);
  assert.equal(respHdr(await h.submit(1, [encode.cursor(Cmd.UPDATE_CURSOR, { scanoutId: 0, x: 0, y: 0, id: 77 })], 24)).type, Resp.ERR_INVALID_RESOURCE_ID);
  assert.equal(respHdr(await h.submit(1, [encode.cursor(Cmd.UPDATE_CURSOR, { scanoutId: 0, x: 0, y: 0, id: 8 })], 24)).type, Resp.ERR_INVALID_PARAMETER);
  assert.equal(respHdr(await h.submit(1, [encode.getDisplayInfo()], 24)).type, Resp.ERR_UNSPEC);
  assert.equal(respHdr(await h.submit(1, [new Uint8Array(30)], 24)).type, Resp.ERR_UNSPEC);
  await expectResp(h, encode.unref(9), Resp.OK_NODATA);
  assert.equal(h.device.state.cursor.resourceId, 0, "unref hides the cursor");
});

test("random requests never crash the device: every one gets an error or OK header", async () => {
  using h = new Harness({ shmSize: 1n << 20n });
  await make2d(h, 1, 8, 8);
  await expectResp(h, encode.createBlob(2, PAGE), Resp.OK_NODATA);
  let seed = 0x9e3779b9;
  const rnd = () => ((seed = (Math.imul(seed ^ (seed >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0), seed);
  const types = [0x100, 0x101, 0x102, 0x103, 0x104, 0x105, 0x106, 0x107, 0x108, 0x10c, 0x10d, 0x208, 0x209, 0x300, 0x301, rnd() & 0xffff];
  for (let i = 0; i < 400; i++) {
    const b = new Uint8Array(rnd() % 120);
    for (let j = 0; j < b.length; j++) b[j] = rnd() & (j >= 24 && j < 28 ? 0x3 : 0xff); // small resource ids now and then
    if (b.length >= 4) new DataView(b.buffer).setUint32(0, types[rnd() % types.length] as number, true);
    const q = i % 5 === 0 ? 1 : 0;
    const out = await h.submit(q, b.length === 0 ? [new Uint8Array(1)] : [b], 512);
    const t = respHdr(out).type;
    assert.ok((t >= 0x1100 && t <= 0x1106) || (t >= 0x1200 && t <= 0x1205), `request ${i}: response 0x${t.toString(16)}`);
  }
  assert.ok(h.device.state.hostBytes <= 256n << 20n);
});
