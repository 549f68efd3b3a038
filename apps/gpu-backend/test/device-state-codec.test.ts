/**
 * The GPU device's saveState / loadState without sockets (docs/protocol.md#device-state-transfer): a state
 * round-trips into a fresh device (resources, scanout, cursor, host memory, the blob mapped again
 * at its offset on start); corrupted and truncated states either load consistently or are refused
 * with an Error that installs nothing, and no host blob memory is left behind either way.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import type { StateReader, StateWriter } from "@vhostkit/backend";
import { Cmd, encode, FORMAT_BGRX, Resp, respHdr, respName } from "../../device/src/gpu/protocol.js";
import { GpuDevice } from "../src/device.js";
import { Harness } from "./helpers/harness.js";

const W = 32;
const H = 16;
const RECT = { x: 0, y: 0, width: W, height: H };

async function ok(h: Harness, req: Uint8Array, want: number = Resp.OK_NODATA, queue = 0): Promise<void> {
  const got = respHdr(await h.submit(queue, [req], 64)).type;
  assert.equal(respName(got), respName(want), h.events.at(-1)?.message ?? "");
}

/** A writer that keeps what it is given. */
function collector(): StateWriter & { bytes(): Uint8Array } {
  const chunks: Uint8Array[] = [];
  let written = 0;
  return {
    get written() {
      return written;
    },
    async write(b: Uint8Array) {
      chunks.push(b.slice());
      written += b.byteLength;
    },
    bytes() {
      const out = new Uint8Array(written);
      let at = 0;
      for (const c of chunks) {
        out.set(c, at);
        at += c.byteLength;
      }
      return out;
    },
  };
}

/** A reader over `bytes`, as the framework's pipe reader behaves (a short stream is an error). */
function reader(bytes: Uint8Array): StateReader {
  let at = 0;
  return {
    get consumed() {
      return at;
    },
    async readExactly(len: number) {
      if (at + len > bytes.byteLength) throw new Error(`truncated: ${len} bytes wanted at ${at} of ${bytes.byteLength}`);
      at += len;
      return bytes.slice(at - len, at);
    },
    async readToEnd() {
      const rest = bytes.slice(at);
      at = bytes.byteLength;
      return rest;
    },
    async atEnd() {
      return at === bytes.byteLength;
    },
  };
}

/** A device with a 2D resource, a mapped blob on scanout 0 and a cursor; its saved state. */
async function source(): Promise<{ h: Harness; state: Uint8Array }> {
  const h = new Harness({ shmSize: 4n << 20n });
  const pixels = Uint8Array.from({ length: W * H * 4 }, (_, i) => (i * 13) & 0xff);
  await ok(h, encode.create2d(1, FORMAT_BGRX, W, H));
  await ok(h, encode.attachBacking(1, [{ addr: h.alloc(pixels.byteLength, pixels), len: pixels.byteLength }]));
  await ok(h, encode.transfer(1, RECT, 0n));
  await ok(h, encode.createBlob(2, BigInt(W * H * 4)));
  await ok(h, encode.mapBlob(2, 0x20000n), Resp.OK_MAP_INFO);
  h.device.blobBytes(2)?.fill(0x5a);
  await ok(h, encode.setScanoutBlob(0, 2, { rect: RECT, width: W, height: H, format: FORMAT_BGRX, stride: W * 4, offset: 0 }));
  await ok(h, encode.create2d(3, FORMAT_BGRX, 64, 64));
  await ok(h, encode.cursor(Cmd.UPDATE_CURSOR, { scanoutId: 0, x: 5, y: 6, id: 3, hotX: 1, hotY: 2 }), Resp.OK_NODATA, 1);
  h.device.stop();
  const out = collector();
  await h.device.saveState(out);
  return { h, state: out.bytes() };
}

const openFds = (): number => readdirSync("/proc/self/fd").length;

test("saveState then loadState into a fresh device: the same resources, scanout image, cursor and host memory; the blob is mapped again on start", async () => {
  const { h: a, state } = await source();
  using b = new Harness({ shmSize: 4n << 20n, start: false });
  try {
    await b.device.loadState(reader(state));
    const sa = a.device.state;
    const sb = b.device.state;
    assert.deepEqual([...sb.resources.keys()].sort(), [1, 2, 3]);
    assert.equal(sb.hostBytes, sa.hostBytes);
    assert.deepEqual(sb.cursor, sa.cursor);
    assert.deepEqual(sb.render(0), sa.render(0), "scanout 0 renders the same pixels");
    assert.deepEqual(b.device.blobBytes(2), a.device.blobBytes(2));
    assert.equal(b.client.calls.length, 0, "nothing mapped before start");
    b.start();
    await new Promise((r) => setImmediate(r));
    const map = b.client.calls.find((c) => c.kind === "map");
    assert.ok(map?.kind === "map" && map.args.shmOffset === 0x20000n && map.args.len === 0x1000n * BigInt(Math.ceil((W * H * 4) / 4096)));
    const r2 = sb.resources.get(2);
    assert.ok(
      r2?.kind === "blob" && r2.mapping !== undefined && r2.mapping.restore === undefined && r2.mapping.offset === 0x20000n,
      "mapped, no longer pending",
    );
    await ok(b, encode.mapBlob(2, 0x100000n), Resp.ERR_INVALID_PARAMETER); // already mapped
  } finally {
    a[Symbol.dispose]();
  }
});

test("corrupted and truncated states: each loads consistently or is refused with an Error that installs nothing; no host blob is left behind", async () => {
  const { h: a, state } = await source();
  a[Symbol.dispose]();
  const before = openFds();
  let seed = 0x12345678;
  const next = (): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed;
  };
  let refused = 0;
  const trials: Uint8Array[] = [];
  // The header, the records and the first bytes of each payload, where a flip changes the meaning.
  for (let i = 0; i < 400; i++) {
    const s = state.slice();
    const at = next() % Math.min(s.byteLength, 400);
    s[at] = (s[at] as number) ^ (1 << (next() % 8));
    trials.push(s);
  }
  for (let cut = 0; cut < state.byteLength; cut += Math.ceil(state.byteLength / 40)) trials.push(state.subarray(0, cut));
  trials.push(new Uint8Array(0), new TextEncoder().encode("VKGPUST\0"));
  for (const s of trials) {
    const d = new GpuDevice({ shmSize: 4n << 20n });
    try {
      await d.loadState(reader(s));
      // Accepted: whatever it holds renders and its accounting adds up.
      d.state.render(0);
      let host = 0n;
      for (const r of d.state.resources.values()) host += r.kind === "blob" ? r.blob.size : BigInt(r.pixels.byteLength);
      assert.equal(d.state.hostBytes, host);
    } catch (err) {
      assert.ok(err instanceof Error, String(err));
      assert.equal(d.state.resources.size, 0, `nothing installed (${err.message})`);
      refused++;
    } finally {
      d.reset();
    }
  }
  assert.ok(refused >= 40, `${refused} of ${trials.length} refused (every truncation at least)`);
  assert.equal(openFds(), before, "every blob memfd of a refused or reset state was closed");
});
