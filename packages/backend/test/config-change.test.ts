/**
 * BackendClient.configChanged over a real socketpair against a hand-played front-end:
 * BACKEND_CONFIG_CHANGE_MSG with NEED_REPLY when REPLY_ACK is negotiated, resolved by the ack;
 * a failure status is REJECTED; without CONFIG it is NOT_NEGOTIATED and nothing is sent.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Endpoint, sendAck, socketPair } from "@vhostkit/transport";
import { BackendRequest } from "@vhostkit/wire";
import { BackendClient, BackendError } from "../src/index.js";

const code = (e: unknown) => (e instanceof BackendError ? e.code : String(e));

test("CONFIG_CHANGE_MSG: acked with REPLY_ACK, a failure status is REJECTED, not sent without CONFIG", async () => {
  const [mine, theirs] = socketPair();
  const fe = new Endpoint(theirs);
  const client = new BackendClient(new Endpoint(mine), { replyAck: true, shmem: false, sendFd: false, config: true, memRw: false, isRunning: () => true });
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
  client.close();
  fe.close();

  const [a, b] = socketPair();
  const peer = new Endpoint(b);
  const without = new BackendClient(new Endpoint(a), { replyAck: true, shmem: false, sendFd: false, config: false, memRw: false, isRunning: () => true });
  await assert.rejects(without.configChanged(), (e: unknown) => code(e) === "NOT_NEGOTIATED");
  without.close();
  await assert.rejects(peer.recv(), (e: unknown) => (e as { code?: string }).code === "EOF", "nothing was sent before the close");
  peer.close();
});
