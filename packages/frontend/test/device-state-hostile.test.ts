/**
 * `saveDeviceState` / `loadDeviceState` against a hostile back-end (raw frames over a real
 * socketpair, real pipes): an error reply that carries an fd, an error code, a state that never
 * ends, an own channel end that is no pipe, CHECK_DEVICE_STATE non-zero, and a back-end that drops
 * the state yet answers success: each a typed error, every fd closed once.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readlinkSync } from "node:fs";
import { createPipe, Endpoint, OwnedFd, PipeEnd, socketPair } from "@vhostkit/transport";
import { encodeReply, FrontendRequest, HEADER_SIZE, type DeviceStateReply } from "@vhostkit/wire";
import { Frontend, isFrontendError, loadDeviceState, saveDeviceState } from "../src/index.js";

/** Open fds of this process by kind: pipes and sockets. */
function openFds(): { pipes: number; sockets: number } {
  let pipes = 0;
  let sockets = 0;
  for (const f of readdirSync("/proc/self/fd")) {
    let target = "";
    try {
      target = readlinkSync(`/proc/self/fd/${f}`);
    } catch {
      continue; // the directory's own fd, closed by now
    }
    if (target.startsWith("pipe:")) pipes++;
    if (target.startsWith("socket:")) sockets++;
  }
  return { pipes, sockets };
}

/** What the scripted back-end does with SET_DEVICE_STATE_FD: its reply (and fds), and what it does with the fd it got. */
interface Script {
  /** `fd` is the front-end's channel end; the serving loop closes it after `after` unless transferred. */
  reply(fd: OwnedFd): { value: DeviceStateReply; fds?: readonly number[]; after?: () => void | Promise<void> };
  /** CHECK_DEVICE_STATE's answer (default 0). */
  readonly check?: bigint;
}

/** A front-end connected to a scripted back-end on a socketpair; runs `fn`, then closes both sides. */
async function withBackend(script: Script, fn: (fe: Frontend) => Promise<void>): Promise<void> {
  const [mine, theirs] = socketPair();
  const fe = new Frontend(new Endpoint(mine));
  const ep = new Endpoint(theirs);
  const served = (async () => {
    for (;;) {
      const msg = await ep.recv().catch(() => undefined);
      if (msg === undefined) return;
      const given = msg.fds[0];
      if (msg.request === FrontendRequest.SET_DEVICE_STATE_FD && given !== undefined) {
        const r = script.reply(given);
        const frame = encodeReply("frontend", "SET_DEVICE_STATE_FD", r.value);
        await ep.send(msg.request, 0x5, frame.subarray(HEADER_SIZE), r.fds ?? []);
        await r.after?.();
      } else if (msg.request === FrontendRequest.CHECK_DEVICE_STATE) {
        await ep.send(msg.request, 0x5, encodeReply("frontend", "CHECK_DEVICE_STATE", script.check ?? 0n).subarray(HEADER_SIZE));
      }
      for (const f of msg.fds) f.close();
    }
  })();
  try {
    await fn(fe);
  } finally {
    fe.close();
    await served;
    ep.close();
  }
}

const code = (c: string, text: RegExp) => (e: unknown) => isFrontendError(e) && e.code === c && text.test(e.message);

test("hostile back-ends: error with an fd, an error code, an endless state, an own end that is no pipe, CHECK non-zero, a dropped load: typed errors, fds closed", async () => {
  const before = openFds();
  // An error that comes with an fd: PROTOCOL, the fd closed.
  const stray = createPipe();
  const strayClose = () => {
    stray.readEnd.close();
    stray.writeEnd.close();
  };
  await withBackend({ reply: () => ({ value: { error: 1, noFd: false }, fds: [stray.readEnd.fd], after: strayClose }) }, async (fe) => {
    await assert.rejects(saveDeviceState(fe), code("PROTOCOL", /set_device_state_fd: back-end answered error 1 with an fd \(save\)/));
  });
  // An error code: REFUSED.
  await withBackend({ reply: () => ({ value: { error: 5, noFd: true } }) }, async (fe) => {
    await assert.rejects(loadDeviceState(fe, Uint8Array.of(1)), code("REFUSED", /back-end answered error 5 \(load\)/));
  });
  // A state that never ends: PROTOCOL at the limit; the back-end's writes then fail (EPIPE), it stays up.
  let writerFailed: unknown;
  await withBackend(
    {
      reply: (fd) => ({
        value: { error: 0, noFd: true },
        after: () => {
          const w = PipeEnd.open(new OwnedFd(fd.transfer()), "write"); // kept: the loop closes only what it still owns
          void (async () => {
            try {
              for (;;) await w.write(new Uint8Array(64 * 1024));
            } catch (e) {
              writerFailed = e;
            } finally {
              w.close();
            }
          })();
        },
      }),
    },
    async (fe) => {
      await assert.rejects(saveDeviceState(fe, { maxBytes: 1 << 20 }), code("PROTOCOL", /state longer than the limit of 0x100000 bytes/));
    },
  );
  while (writerFailed === undefined) await new Promise((r) => setImmediate(r));
  // Its own channel end, but a socket: PROTOCOL.
  const [s1, s2] = socketPair();
  await withBackend({ reply: () => ({ value: { error: 0, noFd: false }, fds: [s1.fd] }) }, async (fe) => {
    await assert.rejects(saveDeviceState(fe), code("PROTOCOL", /the back-end's own channel end is unusable: fd \d+ is not a pipe/));
  });
  s1.close();
  s2.close();
  // CHECK_DEVICE_STATE non-zero after a complete transfer: REFUSED.
  await withBackend({ reply: (fd) => ({ value: { error: 0, noFd: true }, after: () => fd.close() }), check: 7n }, async (fe) => {
    await assert.rejects(saveDeviceState(fe), code("REFUSED", /check_device_state: back-end answered 0x7/));
  });
  // A back-end that closes the pipe unread, yet answers CHECK 0: the lost write is IO_ERROR.
  await withBackend({ reply: (fd) => ({ value: { error: 0, noFd: true }, after: () => fd.close() }) }, async (fe) => {
    await assert.rejects(loadDeviceState(fe, new Uint8Array(256 * 1024)), code("IO_ERROR", /device state load: pipe: write: broken pipe \(EPIPE\)/));
  });
  assert.deepEqual(openFds(), before, "every pipe end and socket closed");
});
