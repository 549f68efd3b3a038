/**
 * Device state through the front-end (docs/protocol.md#device-state-transfer): the RAM blk example
 * device in two processes; data written through the blk driver to the first is saved with
 * `saveDeviceState` (rings stopped first), loaded into the second with `loadDeviceState`, and read
 * back there through the blk driver. A back-end that refuses the state, and one without
 * DEVICE_STATE, give typed errors.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readlinkSync } from "node:fs";
import { ProtocolFeature } from "@vhostkit/wire";
import { BlkDriver, Guest, isFrontendError, loadDeviceState, saveDeviceState, SUPPORTED_PROTOCOL_FEATURES } from "../src/index.js";
import { startRamBlk } from "./helpers/ram-blk-process.js";

/** Pipes this process has open (state channels, and the device processes' stdio while they run). */
const openPipes = (): number =>
  readdirSync("/proc/self/fd").filter((f) => {
    try {
      return readlinkSync(`/proc/self/fd/${f}`).startsWith("pipe:");
    } catch {
      return false; // the directory's own fd, closed by now
    }
  }).length;

const pattern = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 13 + seed) & 0xff);

test("blk data written to one RAM blk process is saved, loaded into a fresh one, and read back there; the source continues after the save", async () => {
  const pipesBefore = openPipes();
  const source = await startRamBlk(["--size-mib", "1"]);
  const target = await startRamBlk(["--size-mib", "1", "--own-state-pipe"]); // loads through a pipe of its own (reply bit 8 clear)
  const guest = new Guest();
  try {
    const a = await guest.addDevice({ socketPath: source.socket });
    assert.notEqual(a.info.ackedProtocolFeatures & ProtocolFeature.DEVICE_STATE, 0n, "DEVICE_STATE negotiated");
    const blkA = await BlkDriver.attach(a);
    await blkA.write(8n, pattern(64 * 1024, 1));
    const state = await saveDeviceState(a); // stops a's rings, then SET_DEVICE_STATE_FD, read to EOF, CHECK
    assert.equal(state.byteLength, 16 + (1 << 20));
    assert.deepEqual(state.subarray(0, 8), new TextEncoder().encode("vkramblk"));
    // The source is stopped, not gone: its rings start again and serve the same data.
    const again = await BlkDriver.attach(a);
    assert.deepEqual(await again.read(8n, 128), pattern(64 * 1024, 1));

    const b = await guest.addDevice({ socketPath: target.socket });
    await loadDeviceState(b, state);
    const blkB = await BlkDriver.attach(b);
    assert.deepEqual(await blkB.read(8n, 128), pattern(64 * 1024, 1), "the loaded disk");
    assert.deepEqual(await blkB.read(0n, 8), new Uint8Array(4096), "and nothing else");

    // A state the back-end refuses: CHECK_DEVICE_STATE fails, the disk stays as it was.
    const bad = state.slice();
    bad[0] = 0;
    await assert.rejects(loadDeviceState(b, bad), (e: unknown) => isFrontendError(e) && e.code === "REFUSED" && /check_device_state/.test(e.message));
    await assert.rejects(loadDeviceState(b, state.subarray(0, 1000)), (e: unknown) => isFrontendError(e) && e.code === "REFUSED");
    const blkB2 = await BlkDriver.attach(b);
    assert.deepEqual(await blkB2.read(8n, 128), pattern(64 * 1024, 1));
  } finally {
    await guest.close();
    await source.stop();
    await target.stop();
  }
  assert.equal(openPipes(), pipesBefore, "every pipe end closed");
});

test("a back-end without DEVICE_STATE negotiated: UNSUPPORTED before anything is sent", async () => {
  const blk = await startRamBlk(["--size-mib", "1"]);
  const guest = new Guest();
  try {
    const d = await guest.addDevice({ socketPath: blk.socket, protocolFeatures: SUPPORTED_PROTOCOL_FEATURES & ~ProtocolFeature.DEVICE_STATE });
    await assert.rejects(saveDeviceState(d), (e: unknown) => isFrontendError(e) && e.code === "UNSUPPORTED" && /DEVICE_STATE/.test(e.message));
    await assert.rejects(loadDeviceState(d, new Uint8Array(16)), (e: unknown) => isFrontendError(e) && e.code === "UNSUPPORTED");
  } finally {
    await guest.close();
    await blk.stop();
  }
});
