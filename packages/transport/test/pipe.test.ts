/**
 * `PipeEnd`: one end of a pipe read to EOF or written without blocking the event loop (the device
 * state channel of SET_DEVICE_STATE_FD): more than the pipe's buffer moves while both sides wait
 * through the reactor, the reader sees EOF when the writer closes, a writer whose reader left gets
 * EPIPE (the process stays up), and what is not a pipe, or the wrong end, is refused and closed.
 */
import { before, test } from "node:test";
import assert from "node:assert/strict";
import { createPipe, isTransportError, OwnedFd, PipeEnd, Reactor, socketPair } from "../src/index.js";
import { EFD_CLOEXEC, eventfdSys } from "../src/sys/eventfd.js";
import { fdCount } from "./helpers/fds.js";

before(() => {
  Reactor.shared();
});

const refused = (code: string, text: RegExp) => (e: unknown) => isTransportError(e) && e.code === code && text.test(e.message);

test("1 MiB through a 64 KiB pipe: the writer waits for room, the reader for data, then EOF; every fd closed", async () => {
  const before = fdCount();
  const { readEnd, writeEnd } = createPipe();
  const reader = PipeEnd.open(readEnd, "read");
  const writer = PipeEnd.open(writeEnd, "write");
  const data = Uint8Array.from({ length: 1 << 20 }, (_, i) => (i * 31 + (i >> 12)) & 0xff);
  const written = writer.write(data).then(() => writer.close());
  const parts: Uint8Array[] = [];
  for (let c = await reader.read(); c.byteLength > 0; c = await reader.read()) parts.push(c);
  await written;
  assert.deepEqual(Buffer.concat(parts), Buffer.from(data));
  assert.equal((await reader.read()).byteLength, 0, "EOF again");
  reader.close();
  reader.close();
  assert.ok(reader.closed && writer.closed);
  assert.equal(fdCount(), before);
});

test("a writer whose reader left: SYSCALL EPIPE (disconnected), the process stays up; a closed end refuses with CLOSED, a pending wait too", async () => {
  const { readEnd, writeEnd } = createPipe();
  const writer = PipeEnd.open(writeEnd, "write");
  readEnd.close();
  await assert.rejects(
    writer.write(Uint8Array.of(1)),
    (e: unknown) => isTransportError(e) && e.code === "SYSCALL" && e.kind === "disconnected" && e.syscall === "write",
  );
  writer.close();
  await assert.rejects(writer.write(Uint8Array.of(1)), refused("CLOSED", /pipe write end closed/));
  const p = createPipe();
  const reader = PipeEnd.open(p.readEnd, "read");
  const pending = reader.read();
  reader.close();
  await assert.rejects(pending, refused("CLOSED", /closed/));
  p.writeEnd.close();
  await assert.rejects(reader.read(), refused("CLOSED", /pipe read end closed/));
});

test("not a pipe (eventfd, socket) is NOT_A_PIPE, the wrong end BAD_FD_MODE, the wrong call on an end BAD_FD_MODE: each fd closed by open", async () => {
  const before = fdCount();
  const ev = new OwnedFd(eventfdSys(0, EFD_CLOEXEC));
  assert.throws(() => PipeEnd.open(ev, "read"), refused("NOT_A_PIPE", /is not a pipe or fifo/));
  assert.equal(ev.closed, true);
  const [a, b] = socketPair();
  assert.throws(() => PipeEnd.open(a, "write"), refused("NOT_A_PIPE", /not a pipe/));
  assert.equal(a.closed, true);
  b.close();
  const { readEnd, writeEnd } = createPipe();
  assert.throws(() => PipeEnd.open(readEnd, "write"), refused("BAD_FD_MODE", /is the read end, expected the write end/));
  assert.throws(() => PipeEnd.open(writeEnd, "read"), refused("BAD_FD_MODE", /is the write end, expected the read end/));
  assert.ok(readEnd.closed && writeEnd.closed);
  const p = createPipe();
  const reader = PipeEnd.open(p.readEnd, "read");
  await assert.rejects(reader.write(Uint8Array.of(1)), refused("BAD_FD_MODE", /cannot write/));
  reader.close();
  p.writeEnd.close();
  assert.equal(fdCount(), before);
});
