/**
 * BackendClient's MEM_READ / MEM_WRITE over a real socketpair, against a hand-played front-end:
 * a reply of the expected length is received straight into the caller's buffer; refusals, short
 * data and malformed heads are typed errors that leave the channel usable; nothing is sent while
 * the device is not running; a front-end that never answers times out (through FallbackMemory).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Endpoint, sendReply, socketPair } from "@vhostkit/transport";
import { MEM_RW_MAX_PAYLOAD, decodeMessage, encodeMemAccessHead } from "@vhostkit/wire";
import { FallbackError, FallbackMemory } from "@vhostkit/fallback";
import { MemoryTable, guestAddress } from "@vhostkit/regions";
import { BackendClient, BackendError } from "../src/index.js";

/** What the front-end answers to one MEM_READ of `size` bytes at `gpa`. */
type Answer = (gpa: bigint, size: number) => Uint8Array[];

async function withClient(answers: Answer[], body: (client: BackendClient) => Promise<void>): Promise<void> {
  const [mine, theirs] = socketPair();
  const fe = new Endpoint(theirs, { maxPayload: MEM_RW_MAX_PAYLOAD });
  const client = new BackendClient(new Endpoint(mine, { maxPayload: MEM_RW_MAX_PAYLOAD }), {
    replyAck: true,
    shmem: false,
    sendFd: false,
    config: false,
    memRw: true,
    isRunning: () => true,
  });
  const served = (async () => {
    for (const answer of answers) {
      const m = await fe.recv();
      const req = decodeMessage("backend", m.frame, undefined, { maxPayload: MEM_RW_MAX_PAYLOAD });
      assert.equal(req.name, "BACKEND_MEM_READ");
      const { guestAddress, size } = req.value as { guestAddress: bigint; size: number };
      await sendReply(fe, m.request, answer(guestAddress, size));
    }
  })();
  try {
    await body(client);
    await served;
  } finally {
    client.close();
    fe.close();
  }
}

const fill = (n: number, v: number) => new Uint8Array(n).fill(v);

test("MEM_READ: data straight into dst; refusals and malformed replies are typed and keep the channel", async () => {
  const ga = 0x8000_0000n;
  const answers: Answer[] = [
    (gpa, size) => [encodeMemAccessHead("BACKEND_MEM_READ", gpa, size), fill(size, 0x11)], // good
    (gpa) => [encodeMemAccessHead("BACKEND_MEM_READ", gpa, 0)], // refusal
    (gpa, size) => [encodeMemAccessHead("BACKEND_MEM_READ", gpa, size - 4096), fill(size - 4096, 0x22)], // short data
    (gpa, size) => [encodeMemAccessHead("BACKEND_MEM_READ", gpa + 4096n, size), fill(size, 0x33)], // full length, wrong address
    (gpa, size) => {
      const head = encodeMemAccessHead("BACKEND_MEM_READ", gpa, size);
      head[15] = 1; // non-zero padding
      return [head, fill(size, 0x44)];
    },
    (gpa, size) => [encodeMemAccessHead("BACKEND_MEM_READ", gpa, size), fill(size, 0x55)], // good again
  ];
  await withClient(answers, async (client) => {
    const dst = new Uint8Array(65536);
    await client.memReadInto(ga, dst);
    assert.ok(dst.every((x) => x === 0x11));
    const code = (e: unknown) => (e instanceof BackendError ? e.code : String(e));
    dst.fill(0);
    await assert.rejects(client.memReadInto(ga, dst), (e: unknown) => code(e) === "REJECTED");
    assert.ok(
      dst.every((x) => x === 0),
      "a refusal leaves dst untouched",
    );
    await assert.rejects(client.memReadInto(ga, dst), (e: unknown) => code(e) === "REJECTED");
    assert.ok(
      dst.every((x) => x === 0),
      "a short reply leaves dst untouched",
    );
    await assert.rejects(client.memReadInto(ga, dst), (e: unknown) => code(e) === "PROTOCOL" && /echoes/.test((e as Error).message));
    await assert.rejects(client.memReadInto(ga, dst), (e: unknown) => code(e) === "PROTOCOL");
    const part = new Uint8Array(70000).subarray(100, 100 + 65536);
    await client.memReadInto(ga, part);
    assert.ok(
      part.every((x) => x === 0x55),
      "the channel survived every bad reply",
    );
  });
});

test("MEM_READ of a few bytes (a tail shorter than a page) is received into a new buffer", async () => {
  await withClient(
    [(gpa, size) => [encodeMemAccessHead("BACKEND_MEM_READ", gpa, size), Uint8Array.from({ length: size }, (_, i) => i + 1)]],
    async (client) => {
      const got = await client.memRead(0x1000n, 3);
      assert.deepEqual([...got], [1, 2, 3]);
    },
  );
});

test("MEM_READ / MEM_WRITE while the device is not running are NOT_RUNNING and send nothing", async () => {
  const [mine, theirs] = socketPair();
  const fe = new Endpoint(theirs, { maxPayload: MEM_RW_MAX_PAYLOAD });
  let running = false;
  const client = new BackendClient(new Endpoint(mine, { maxPayload: MEM_RW_MAX_PAYLOAD }), {
    replyAck: true,
    shmem: false,
    sendFd: false,
    config: false,
    memRw: true,
    isRunning: () => running,
  });
  try {
    const code = (e: unknown) => (e instanceof BackendError ? e.code : String(e));
    await assert.rejects(client.memReadInto(0x1000n, new Uint8Array(8)), (e: unknown) => code(e) === "NOT_RUNNING");
    await assert.rejects(client.memWrite(0x1000n, new Uint8Array(8)), (e: unknown) => code(e) === "NOT_RUNNING");
    running = true;
    const served = fe.recv();
    const read = client.memReadInto(0x1000n, new Uint8Array(8));
    const first = await served;
    assert.equal(first.request, 11, "the first request to arrive is the one sent while running");
    await sendReply(fe, first.request, [encodeMemAccessHead("BACKEND_MEM_READ", 0x1000n, 8), new Uint8Array(8)]);
    await read;
  } finally {
    client.close();
    fe.close();
  }
});

test("through FallbackMemory, a front-end that never answers is REMOTE_FAILED with the TIMEOUT kept as cause", async () => {
  const [mine, theirs] = socketPair();
  const fe = new Endpoint(theirs, { maxPayload: MEM_RW_MAX_PAYLOAD });
  const client = new BackendClient(new Endpoint(mine, { maxPayload: MEM_RW_MAX_PAYLOAD }), {
    replyAck: true,
    shmem: false,
    sendFd: false,
    config: false,
    memRw: true,
    isRunning: () => true,
    timeoutMs: 50,
  });
  const table = new MemoryTable();
  try {
    const memory = new FallbackMemory(table, client);
    const swallowed = fe.recv(); // read, never answered
    const dst = new Uint8Array(4096);
    const t0 = performance.now();
    await assert.rejects(memory.read(guestAddress(0x10000n), dst), (e: unknown) => {
      assert.ok(e instanceof FallbackError && e.code === "REMOTE_FAILED", String(e));
      let cause: unknown = e;
      const codes: string[] = [];
      while (cause instanceof Error) {
        codes.push(String((cause as { code?: string }).code));
        cause = cause.cause;
      }
      assert.ok(codes.includes("TIMEOUT"), `the timeout is in the cause chain (${codes.join(" <- ")})`);
      return true;
    });
    assert.ok(performance.now() - t0 < 3000, "failed on the 50 ms timeout");
    assert.equal((await swallowed).request, 11);
    // The channel is latched: the next access fails at once, with no second request on the socket.
    await assert.rejects(memory.read(guestAddress(0x10000n), dst), (e: unknown) => e instanceof FallbackError && e.code === "REMOTE_FAILED");
    await assert.rejects(fe.recv(), (e: unknown) => (e as { code?: string }).code === "EOF", "the timed-out channel was closed");
  } finally {
    client.close();
    fe.close();
    table.dispose();
  }
});
