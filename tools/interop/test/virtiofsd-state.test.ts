/**
 * Device state transfer against virtiofsd >= 1.14 (Rust, Debian unstable), which offers DEVICE_STATE
 * (docs/virtio-fs.md#migration): files opened through the vhostkit fs driver on one virtiofsd, its
 * state saved with `saveDeviceState` while dirty page logging is on (as QEMU does it), loaded with `loadDeviceState` into a fresh virtiofsd on the same
 * shared directory, and the FUSE session continued there (`FsDriver.resume`, no second FUSE_INIT):
 * the handles opened on the first instance still read on the second. Without the state the same
 * handle is EBADF; a state virtiofsd cannot deserialize, and one naming a file that is gone, are
 * refused at CHECK_DEVICE_STATE (or, with `--migration-on-error=guest-error`, that one file is EIO).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FsDriver, Guest, isFrontendError, loadDeviceState, saveDeviceState, type FsOpenFile } from "@vhostkit/frontend";
import { peerCommand } from "@vhostkit/peers/peers";
import { assertVersionAtLeast } from "@vhostkit/peers/version";
import { ProtocolFeature } from "@vhostkit/wire";
import { startVirtiofsd, type Virtiofsd } from "./helpers/virtiofsd.js";

const HELLO = "hello from before the migration\n";

/** Reads an open file's first bytes as text, or the error's code and message. */
async function readText(fs: FsDriver, file: FsOpenFile): Promise<string> {
  return fs.read(file, 0n, 4096).then(
    (b) => new TextDecoder().decode(b),
    (e: unknown) => (isFrontendError(e) ? `${e.code}: ${e.message}` : String(e)),
  );
}

test("virtiofsd 1.14: state saved from one instance with files open, loaded into a fresh one; the open handles read there; no state, garbage and a vanished file are refused", {
  timeout: 110_000,
}, async () => {
  const [program, ...args] = peerCommand("sid", "virtiofsd"); // not fetched: fails here, at once
  assertVersionAtLeast(spawnSync(program as string, [...args, "--version"], { encoding: "utf8" }).stdout, "virtiofsd", "1.14");
  const dir = mkdtempSync(join(tmpdir(), "vhostkit-virtiofsd-state-"));
  const shared = join(dir, "shared");
  mkdirSync(join(shared, "sub dir"), { recursive: true });
  writeFileSync(join(shared, "sub dir", "hello.txt"), HELLO);
  writeFileSync(join(shared, "doomed.txt"), "gone soon\n");
  const daemons: Virtiofsd[] = [];
  const start = async (extra: readonly string[] = []) => {
    const d = await startVirtiofsd("rust-1.14", shared, dir, 20_000, extra);
    daemons.push(d);
    return d;
  };
  const guest = new Guest();
  try {
    const sourceDaemon = await start();
    const source = await guest.addDevice({ socketPath: sourceDaemon.socket, timeoutMs: 20_000, dirtyLog: true });
    assert.notEqual(source.info.ackedProtocolFeatures & ProtocolFeature.DEVICE_STATE, 0n, "virtiofsd offers DEVICE_STATE");
    const fs = await FsDriver.attach(source);
    const hello = await fs.open("sub dir/hello.txt");
    const doomed = await fs.open("doomed.txt");
    // As QEMU migrates: dirty logging on first (SET_LOG_BASE, LOG_ALL, the rings' log flag), then the state saved.
    const log = await source.startDirtyLog();
    assert.equal(await readText(fs, hello), HELLO);
    assert.notDeepEqual(log.takeDirtyPages(), [], "the read's reply marked");
    const state = await saveDeviceState(source); // GET_VRING_BASE x2, SET_DEVICE_STATE_FD, the pipe to EOF, CHECK_DEVICE_STATE
    log.dispose();
    assert.doesNotMatch(sourceDaemon.stderr(), /did not announce migration/, "LOG_ALL announced the migration: no warning");
    assert.ok(state.byteLength > 0);
    assert.ok(Buffer.from(state).includes("hello.txt"), "find-paths mode: the state names the open files by path");

    // A fresh instance without the state: the handle means nothing there.
    const bare = await guest.addDevice({ socketPath: (await start()).socket, timeoutMs: 20_000 });
    assert.match(await readText(await FsDriver.resume(bare, fs), hello), /^IO_ERROR: fs read "sub dir\/hello.txt": bad file descriptor \(EBADF\)$/);

    // Garbage, and a truncated state: virtiofsd refuses them at CHECK_DEVICE_STATE.
    const picky = await guest.addDevice({ socketPath: (await start()).socket, timeoutMs: 20_000 });
    for (const bad of [Uint8Array.of(1, 2, 3, 4, 5), state.subarray(0, state.byteLength >> 1)]) {
      await assert.rejects(loadDeviceState(picky, bad), (e: unknown) => isFrontendError(e) && e.code === "REFUSED" && /check_device_state/.test(e.message));
    }

    // The real thing: a fresh instance loads the state, and the session goes on there.
    const target = await guest.addDevice({ socketPath: (await start()).socket, timeoutMs: 20_000 });
    await loadDeviceState(target, state);
    const moved = await FsDriver.resume(target, fs);
    assert.equal(await readText(moved, hello), HELLO, "the handle opened on the first instance reads on the second");
    assert.equal(await readText(moved, doomed), "gone soon\n");
    assert.equal(new TextDecoder().decode(await moved.readFile("sub dir/hello.txt")), HELLO, "and new requests work too");
    await moved.release(hello);

    // A file open in the state is gone on the destination: refused by default (--migration-on-error=abort) ...
    rmSync(join(shared, "doomed.txt"));
    const strict = await guest.addDevice({ socketPath: (await start()).socket, timeoutMs: 20_000 });
    await assert.rejects(loadDeviceState(strict, state), (e: unknown) => isFrontendError(e) && e.code === "REFUSED");
    // ... and with --migration-on-error=guest-error loaded, with only that file failing.
    const lenient = await guest.addDevice({ socketPath: (await start(["--migration-on-error=guest-error"])).socket, timeoutMs: 20_000 });
    await loadDeviceState(lenient, state);
    const partial = await FsDriver.resume(lenient, moved);
    assert.equal(await readText(partial, hello), HELLO);
    assert.match(await readText(partial, doomed), /^IO_ERROR: fs read "doomed.txt": input\/output error \(EIO\)$/);
  } finally {
    await guest.close();
    for (const d of daemons) await d.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
