/**
 * BackendClient.configChanged over a real socketpair against a hand-played front-end:
 * BACKEND_CONFIG_CHANGE_MSG with NEED_REPLY when REPLY_ACK is negotiated, resolved by the ack;
 * a failure status is REJECTED; without CONFIG it is NOT_NEGOTIATED and nothing is sent.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Endpoint, EventFd, sendAck, socketPair } from "@vhostkit/transport";
import { BackendRequest } from "@vhostkit/wire";
import { BackendClient, BackendError } from "../src/index.js";

const code = (e: unknown) => (e instanceof BackendError ? e.code : String(e));

test("CONFIG_CHANGE_MSG: acked with REPLY_ACK, a failure status is REJECTED, not sent without CONFIG", async () => {
  const [mine, theirs] = socketPair();
  const fe = new Endpoint(theirs);
  const client = new BackendClient(new Endpoint(mine), { replyAck: true, shmem: false, sendFd: false, config: true, memRw: false, isRunning: () => true });
  try {
    const first = fe.recv();
    const ok = client.configChanged();
    const m = await first;
    assert.equal(m.request, BackendRequest.BACKEND_CONFIG_CHANGE_MSG);
    assert.equal(m.flags, 0x9, "NEED_REPLY with REPLY_ACK");
    assert.equal(m.payload.length, 0);
    await sendAck(fe, m.request, 0n);
    await ok;
    const second = fe.recv();
    const refused = client.configChanged();
    await sendAck(fe, (await second).request, 22n);
    await assert.rejects(refused, (e: unknown) => code(e) === "REJECTED");
  } finally {
    client.close();
    fe.close();
  }

  const [a, b] = socketPair();
  const peer = new Endpoint(b);
  const without = new BackendClient(new Endpoint(a), { replyAck: true, shmem: false, sendFd: false, config: false, memRw: false, isRunning: () => true });
  try {
    await assert.rejects(without.configChanged(), (e: unknown) => code(e) === "NOT_NEGOTIATED");
    without.close();
    await assert.rejects(peer.recv(), (e: unknown) => (e as { code?: string }).code === "EOF", "nothing was sent before the close");
  } finally {
    without.close();
    peer.close();
  }
});

test("SHMEM_MAP needs BACKEND_SEND_FD to carry its fd: NOT_NEGOTIATED without it, nothing sent, the caller keeps its fd", async () => {
  const [mine, theirs] = socketPair();
  const fe = new Endpoint(theirs);
  const client = new BackendClient(new Endpoint(mine), { replyAck: true, shmem: true, sendFd: false, config: false, memRw: false, isRunning: () => true });
  const blob = EventFd.create(); // any fd: it must not leave this process
  try {
    await assert.rejects(
      client.shmemMap({ shmid: 1, shmOffset: 0n, len: 4096n, writable: true }, blob.fd),
      (e: unknown) => e instanceof BackendError && e.code === "NOT_NEGOTIATED" && /BACKEND_SEND_FD/.test(e.message),
    );
    blob.signal(); // still open: the caller's fd was not consumed
    assert.equal(blob.poll(), 1n);
    // The channel carried nothing: the next message the front-end reads is this UNMAP.
    const unmap = client.shmemUnmap({ shmid: 1, shmOffset: 0n, len: 4096n });
    const m = await fe.recv();
    assert.equal(m.request, BackendRequest.BACKEND_SHMEM_UNMAP);
    assert.equal(m.fds.length, 0);
    await sendAck(fe, m.request, 0n);
    await unmap;
  } finally {
    blob.close();
    client.close();
    fe.close();
  }
});
