/**
 * The cross-process rows of the fallback benchmark: back-end B's reads of A's blob served by a
 * front-end handler in another process (fallback-frontend.ts), three ways in interleaved rounds:
 * - `memRead`: `FallbackMemory.read` over `BackendClient`, revision 1 (the data in the reply);
 * - `buffer`: the same with revision 2 (docs/shmem.md#shared-data-buffer-revision-2): the data
 *   through the front-end's shared buffer, the reply only the 16-byte head;
 * - `raw`: revision 1's request and reply on a bare `Endpoint` (the reply's data received straight
 *   into the destination), without the client's layers.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { BackendClient } from "@vhostkit/backend";
import { FallbackMemory } from "@vhostkit/fallback";
import { type GuestAddress, MemoryTable } from "@vhostkit/regions";
import { Endpoint, socketPair } from "@vhostkit/transport";
import { BackendRequest, HeaderFlag, MEM_RW_HEADER_SIZE, MEM_RW_MAX_PAYLOAD, decodeMemAccessHead, encodeMemAccessHead } from "@vhostkit/wire";

/** GB/s samples of each way, per read size. */
export interface CrossSamples {
  memRead: number[];
  buffer: number[];
  raw: number[];
}

type Read = (dst: Uint8Array) => Promise<void>;
const REQUEST_FLAGS = HeaderFlag.VERSION | HeaderFlag.NEED_REPLY;

/** A front-end handler (fallback-frontend.ts) in its own Bun process; the channel's other end is returned. */
function child(): { ep: Endpoint; proc: ChildProcess } {
  const [mine, theirs] = socketPair();
  const proc = spawn(process.execPath, [join(import.meta.dir, "fallback-frontend.ts")], { stdio: ["ignore", "inherit", "inherit", theirs.fd] });
  theirs.close();
  return { ep: new Endpoint(mine, { maxPayload: MEM_RW_MAX_PAYLOAD }), proc };
}

/** One MEM_READ head for `addr` and `dst.length` (scratch reused: requests are serial). */
function request(ep: Endpoint, head: Uint8Array, addr: bigint, len: number): Promise<void> {
  return ep.send(BackendRequest.BACKEND_MEM_READ, REQUEST_FLAGS, encodeMemAccessHead("BACKEND_MEM_READ", addr, len, head));
}

/** Throws unless `reply` is the successful echo of a read of `len` bytes at `addr`. */
function checkEcho(reply: Uint8Array, addr: bigint, len: number): void {
  const echo = decodeMemAccessHead("BACKEND_MEM_READ", reply.subarray(0, MEM_RW_HEADER_SIZE));
  if (echo.guestAddress !== addr || echo.size !== len) throw new Error(`MEM_READ of 0x${len.toString(16)} at 0x${addr.toString(16)} refused`);
}

/**
 * Measure each way on `sizes` for `rounds` interleaved rounds with `measure` (GB/s of one
 * measurement), after one warm-up measurement of each.
 */
export async function crossProcessReads(
  addr: GuestAddress,
  sizes: readonly number[],
  rounds: number,
  measure: (read: Read, len: number) => Promise<number>,
): Promise<Map<number, CrossSamples>> {
  const [a, b, c] = [child(), child(), child()];
  const options = { replyAck: true, shmem: false, sendFd: false, config: false, memRw: true, isRunning: () => true };
  const clients = [new BackendClient(a.ep, options), new BackendClient(b.ep, { ...options, memRwBuffer: true })];
  const table = new MemoryTable();
  const [inline, shared] = clients.map((client) => new FallbackMemory(table, client));
  const head = new Uint8Array(MEM_RW_HEADER_SIZE);
  const ways: Record<keyof CrossSamples, Read> = {
    memRead: (dst) => (inline as FallbackMemory).read(addr, dst),
    buffer: (dst) => (shared as FallbackMemory).read(addr, dst),
    async raw(dst) {
      await request(c.ep, head, addr, dst.length);
      await c.ep.recvWith((m) => checkEcho(m.payload, addr, dst.length), { bytes: dst, offset: MEM_RW_HEADER_SIZE });
    },
  };
  try {
    const out = new Map<number, CrossSamples>();
    for (const len of sizes) {
      const samples: CrossSamples = { memRead: [], buffer: [], raw: [] };
      for (const read of Object.values(ways)) await measure(read, len); // warm-up: both processes' JIT and spin
      for (let r = 0; r < rounds; r++) for (const [k, read] of Object.entries(ways)) samples[k as keyof CrossSamples].push(await measure(read, len));
      out.set(len, samples);
    }
    return out;
  } finally {
    for (const cl of clients) cl.close();
    c.ep.close();
    table.dispose();
    for (const p of [a.proc, b.proc, c.proc]) p.kill("SIGTERM");
  }
}
