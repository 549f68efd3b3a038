/**
 * `vhost-user-device vsock` (the virtio-vsock driver of @vhostkit/frontend) against
 * vhost-device-vsock 0.3 (rust-vmm, Debian unstable, fetched without root by tools/peers/fetch.sh)
 * whose host side is a Unix socket: stdin and stdout as one vsock stream, more than 1 MiB each way
 * verified byte for byte, credit accounting keeping both directions flowing
 * (docs/virtio-vsock.md#credit), and refusals reported clearly both ways.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { cli, startCli } from "./helpers/cli.js";
import { withDeadline } from "./helpers/processes.js";
import { hostConnect, startVsockDevice } from "./helpers/vhost-device-vsock.js";
import { pattern } from "./helpers/pattern.js";

const CID = 3;

/** Reads from `s` until `n` bytes have arrived (after `first`), then resolves with them. */
function readExactly(s: Socket, n: number, first: Buffer = Buffer.alloc(0)): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts = [first];
    let have = first.length;
    const done = () => {
      s.off("data", onData);
      resolve(Buffer.concat(parts));
    };
    const onData = (b: Buffer) => {
      parts.push(b);
      have += b.length;
      if (have >= n) done();
    };
    if (have >= n) return done();
    s.on("data", onData);
    s.once("error", reject);
    s.once("end", () => (have >= n ? undefined : reject(new Error(`host side ended after ${have} of ${n} bytes`))));
    s.resume();
  });
}

test("vhost-device-vsock 0.3: vsock connect PORT — 1 MiB each way through a host Unix socket, byte-exact; a port nobody listens on is reported", {
  timeout: 100_000,
}, async () => {
  const dir = mkdtempSync(join(tmpdir(), "vhostkit-vsock-"));
  const device = await startVsockDevice(dir, CID);
  const server = createServer();
  try {
    const toHost = pattern((1 << 20) + 13, 5);
    const toGuest = pattern((1 << 20) + 29, 9);
    const received = new Promise<Buffer>((resolve, reject) => {
      server.once("connection", (s: Socket) => {
        // The guest's data first (vhost-device-vsock does not pass a half close on), then ours.
        readExactly(s, toHost.length).then((got) => {
          resolve(got);
          s.end(toGuest);
        }, reject);
      });
    });
    await new Promise<void>((r) => server.listen(`${device.uds}_1234`, r));
    const run = startCli(["vsock", "--socket", device.socket, "--cid", String(CID), "connect", "1234"]);
    run.input(toHost);
    const r = await withDeadline(run.result, 60_000, "vhost-user-device vsock connect");
    assert.equal(r.code, 0, r.stderr);
    assert.ok((await withDeadline(received, 10_000, "the guest's data on the host")).equals(toHost), "guest -> host bytes");
    assert.ok(r.stdoutBytes.equals(toGuest), `host -> guest bytes (${r.stdoutBytes.length} of ${toGuest.length})`);

    // Nobody listens on <uds>_4321; vhost-device-vsock 0.3 sends no RST for that (its enq_rst is a
    // TODO), so the connect ends at the deadline with a message that says what happened.
    const refused = await cli(["vsock", "--socket", device.socket, "--cid", String(CID), "--timeout", "1500", "connect", "4321"]);
    assert.equal(refused.code, 1);
    assert.equal(
      refused.stderr,
      "vhost-user-device: vsock connect to port 4321 of CID 2: connection timed out (ETIMEDOUT): no RESPONSE or RST within 1500 ms — nobody accepted the connection\n",
    );
    const wrongCid = await cli(["vsock", "--socket", device.socket, "--cid", "7", "connect", "1234"]);
    assert.equal(wrongCid.code, 1);
    assert.match(wrongCid.stderr, /^vhost-user-device: vsock: the device's guest CID is 3, not 7\n$/);
  } finally {
    server.close();
    await device.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("vhost-device-vsock 0.3: vsock listen PORT — the host's CONNECT reaches it, 1 MiB each way byte-exact; CONNECT to another port is refused (RST, the host sees its socket closed)", {
  timeout: 100_000,
}, async () => {
  const dir = mkdtempSync(join(tmpdir(), "vhostkit-vsock-"));
  const device = await startVsockDevice(dir, CID);
  let run: ReturnType<typeof startCli> | undefined;
  const sockets: Socket[] = [];
  try {
    const toHost = pattern((1 << 20) + 3, 17);
    const toGuest = pattern((1 << 20) + 7, 21);
    run = startCli(["vsock", "--socket", device.socket, "--cid", String(CID), "listen", "5000"]);
    run.input(toHost);
    // vhost-device-vsock resets a CONNECT that comes before a guest driver is up: wait for the CLI.
    await withDeadline(run.stderrMatch(/listening on vsock port 5000/), 30_000, "vhost-user-device vsock listening");
    const other = await withDeadline(hostConnect(device.uds, 4999), 30_000, "the answer to CONNECT 4999");
    assert.equal(other, null, "a port nobody listens on: the guest answers RST and the device closes the host's socket");
    const c = await withDeadline(hostConnect(device.uds, 5000), 30_000, "OK for CONNECT 5000");
    assert.ok(c !== null, "the guest accepted");
    sockets.push(c.socket);
    const fromGuest = readExactly(c.socket, toHost.length, c.rest);
    c.socket.write(toGuest);
    const got = await withDeadline(fromGuest, 60_000, "the guest's 1 MiB on the host");
    assert.ok(got.equals(toHost), "guest -> host bytes");
    c.socket.end();
    const r = await withDeadline(run.result, 30_000, "vhost-user-device vsock listen to exit");
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdoutBytes.equals(toGuest), `host -> guest bytes (${r.stdoutBytes.length} of ${toGuest.length})`);
  } finally {
    for (const s of sockets) s.destroy();
    run?.kill();
    await device.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("vhost-device-vsock 0.3: check — its 8-byte config and a short reply past it are handled; --hostile: malformed requests refused or the connection closed, and it listens again", {
  timeout: 100_000,
}, async () => {
  const dir = mkdtempSync(join(tmpdir(), "vhostkit-vsock-"));
  const device = await startVsockDevice(dir, CID);
  try {
    const plain = await cli(["check", "--socket", device.socket, "--json"], 40_000);
    assert.equal(plain.code, 0, plain.stdout + plain.stderr);
    const checks = (JSON.parse(plain.stdout) as { checks: { name: string; status: string; reason: string }[] }).checks;
    assert.match(checks.find((c) => c.name === "config size handling")?.reason ?? "", /^8-byte config; 9 bytes refused \(a zero-size or short reply\)/);
    const hostile = await cli(["check", "--socket", device.socket, "--hostile", "--json"], 60_000);
    assert.equal(hostile.code, 0, hostile.stdout + hostile.stderr);
    const cases = (JSON.parse(hostile.stdout) as { checks: { name: string; status: string; reason: string }[] }).checks.filter((c) =>
      c.name.startsWith("hostile: "),
    );
    // It closes the connection on most malformed requests ("Fatal error: ... invalid message"),
    // refuses the others, and listens again (docs/virtio-vsock.md#observed-devices).
    assert.equal(cases.length, 6);
    assert.ok(
      cases.every((c) => c.status === "pass"),
      JSON.stringify(cases, null, 1),
    );
    assert.match(cases[0]?.reason ?? "", /the back-end closed the connection; a new connection is served$/);
    assert.match(device.stderr(), /Fatal error: failed to handle request: invalid message/);
  } finally {
    await device.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
