/**
 * GET_EDID and the EDID block: decoded here field by field from the VESA E-EDID 1.4 layout
 * (header, checksum, manufacturer, the preferred detailed timing, the monitor name), as the Linux
 * driver's EDID parser reads them.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Resp, respHdr } from "../../device/src/gpu/protocol.js";
import { edidTiming, makeEdid } from "../src/edid.js";
import { Harness } from "./helpers/harness.js";

/** The fields of a base block that a driver needs. */
function parse(e: Uint8Array) {
  const d = 54;
  const hActive = (e[d + 2] as number) | (((e[d + 4] as number) >> 4) << 8);
  const hBlank = (e[d + 3] as number) | (((e[d + 4] as number) & 0xf) << 8);
  const vActive = (e[d + 5] as number) | (((e[d + 7] as number) >> 4) << 8);
  const vBlank = (e[d + 6] as number) | (((e[d + 7] as number) & 0xf) << 8);
  const clockHz = ((e[d] as number) | ((e[d + 1] as number) << 8)) * 10_000;
  const mfg = ((e[8] as number) << 8) | (e[9] as number);
  return {
    header: [...e.subarray(0, 8)],
    checksum: e.reduce((s, b) => s + b, 0) % 256,
    manufacturer: String.fromCharCode(64 + ((mfg >> 10) & 31), 64 + ((mfg >> 5) & 31), 64 + (mfg & 31)),
    version: `${e[18]}.${e[19]}`,
    mode: `${hActive}x${vActive}`,
    refresh: clockHz / ((hActive + hBlank) * (vActive + vBlank)),
    vBlankUs: (vBlank * 1e6 * (hActive + hBlank)) / clockHz,
    name: e[75] === 0xfc ? String.fromCharCode(...e.subarray(77, 90)).split("\n")[0] : undefined,
    extensions: e[126],
  };
}

test("EDID 1.4 base block: header, checksum, VHK, one detailed timing of the display at 60 Hz, monitor name", () => {
  for (const [w, h] of [
    [640, 480],
    [1024, 768],
    [1920, 1080],
    [1, 1],
    [4095, 2160],
  ] as const) {
    const e = makeEdid(w, h);
    assert.ok(e !== undefined && e.byteLength === 128);
    const p = parse(e);
    assert.deepEqual(p.header, [0, 255, 255, 255, 255, 255, 255, 0]);
    assert.equal(p.checksum, 0);
    assert.deepEqual([p.manufacturer, p.version, p.mode, p.name, p.extensions], ["VHK", "1.4", `${w}x${h}`, "vhostkit-gpu", 0]);
    // The clock has 10 kHz steps: exact enough from a few hundred pixels up.
    if (w >= 320) assert.ok(Math.abs(p.refresh - 60) < 0.1, `${w}x${h}: ${p.refresh} Hz`);
    if (w >= 320) assert.ok(p.vBlankUs >= 440, `${w}x${h}: vertical blanking ${p.vBlankUs} µs`);
  }
  assert.equal(makeEdid(4096, 480), undefined, "wider than 12 bits");
  assert.equal(makeEdid(640, 0), undefined);
  assert.equal(edidTiming(4095, 4095), undefined, "a pixel clock above 655.35 MHz");
});

test("GET_EDID: OK_EDID of 1056 bytes with size 128 and the block; a bad scanout or a short request is refused", async () => {
  using h = new Harness({ display: { width: 800, height: 600 } });
  const req = (scanout: number, len = 32) => {
    const b = new Uint8Array(len);
    new DataView(b.buffer).setUint32(0, 0x010a, true);
    if (len >= 28) new DataView(b.buffer).setUint32(24, scanout, true);
    return b;
  };
  const out = await h.control(req(0), 2048);
  assert.equal(respHdr(out).type, 0x1104);
  assert.equal(out.byteLength, 1056);
  assert.equal(new DataView(out.buffer).getUint32(24, true), 128);
  assert.deepEqual(out.subarray(32, 160), makeEdid(800, 600));
  assert.ok(out.subarray(160).every((b) => b === 0));
  assert.equal(parse(out.subarray(32, 160)).mode, "800x600");
  assert.equal(respHdr(await h.control(req(1))).type, Resp.ERR_INVALID_SCANOUT_ID);
  assert.equal(respHdr(await h.control(req(0, 31))).type, Resp.ERR_UNSPEC);
  using big = new Harness({ display: { width: 8192, height: 4320 } });
  assert.equal(respHdr(await big.control(req(0))).type, Resp.ERR_UNSPEC, "EDID not offered for a mode it cannot describe");
});
