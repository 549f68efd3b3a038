/**
 * The cross-process rows of the fallback benchmark: back-end B's reads of A's blob served by a
 * front-end in another process, three ways, in interleaved rounds:
 * - `memRead`: `FallbackMemory.read` over `BackendClient` against the front-end's
 *   `BackendRequestHandler` (fallback-frontend.ts): the real path;
 * - `raw`: the same MEM_READ request and reply on a bare `Endpoint` against the same handler (the
 *   reply's data received straight into the destination), without the client's layers;
 * - `shared`: the same request on a bare `Endpoint`, the reply only the 16-byte head, the data
 *   copied through a 64 KiB memfd both processes map (fallback-shared-buffer.ts): the cost of a
 *   MEM_READ whose data does not travel through the socket — a design measured, not a protocol
 *   vhostkit speaks.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { BackendClient } from "@vhostkit/backend";
import { FallbackMemory } from "@vhostkit/fallback";
import { type GuestAddress, MemoryTable } from "@vhostkit/regions";
import { Endpoint, socketPair } from "@vhostkit/transport";
import { MAP, PROT, closeFd, mmap, munmap, nativeView, sealedMemfd } from "@vhostkit/transport/sys";
import { BackendRequest, HeaderFlag, MEM_RW_HEADER_SIZE, MEM_RW_MAX_DATA, MEM_RW_MAX_PAYLOAD, decodeMemAccessHead, encodeMemAccessHead } from "@vhostkit/wire";

/** GB/s samples of each way, per read size. */
export interface CrossSamples {
  memRead: number[];
  raw: number[];
  shared: number[];
}

type Read = (dst: Uint8Array) => Promise<void>;
const REQUEST_FLAGS = HeaderFlag.VERSION | HeaderFlag.NEED_REPLY;

/** `script` in its own Bun process with `fds` as its fds 3, 4, …; the socket's other end is returned. */
function child(script: string, extra: number[] = []): { ep: Endpoint; proc: ChildProcess } {
  const [mine, theirs] = socketPair();
  const proc = spawn(process.execPath, [join(import.meta.dir, script)], { stdio: ["ignore", "inherit", "inherit", theirs.fd, ...extra] });
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
  const a = child("fallback-frontend.ts");
  const b = child("fallback-frontend.ts");
  const bufferFd = sealedMemfd("bench-shared-buffer", BigInt(MEM_RW_MAX_DATA));
  if (bufferFd < 0) throw new Error(`memfd: errno ${-bufferFd}`);
  const c = child("fallback-shared-buffer.ts", [bufferFd]);
  const mapped = mmap(0n, MEM_RW_MAX_DATA, PROT.READ | PROT.WRITE, MAP.SHARED, bufferFd, 0n);
  const buffer = new Uint8Array(nativeView(mapped.ptr, MEM_RW_MAX_DATA));
  const client = new BackendClient(a.ep, { replyAck: true, shmem: false, sendFd: false, config: false, memRw: true, isRunning: () => true });
  const table = new MemoryTable();
  const remote = new FallbackMemory(table, client);
  const head = new Uint8Array(MEM_RW_HEADER_SIZE);
  const ways: Record<keyof CrossSamples, Read> = {
    memRead: (dst) => remote.read(addr, dst),
    async raw(dst) {
      await request(b.ep, head, addr, dst.length);
      await b.ep.recvWith((m) => checkEcho(m.payload, addr, dst.length), { bytes: dst, offset: MEM_RW_HEADER_SIZE });
    },
    async shared(dst) {
      await request(c.ep, head, addr, dst.length);
      await c.ep.recvWith((m) => checkEcho(m.payload, addr, dst.length));
      dst.set(buffer.subarray(0, dst.length));
    },
  };
  try {
    const out = new Map<number, CrossSamples>();
    for (const len of sizes) {
      const samples: CrossSamples = { memRead: [], raw: [], shared: [] };
      for (const read of Object.values(ways)) await measure(read, len); // warm-up: both processes' JIT and spin
      for (let r = 0; r < rounds; r++) for (const [k, read] of Object.entries(ways)) samples[k as keyof CrossSamples].push(await measure(read, len));
      out.set(len, samples);
    }
    return out;
  } finally {
    client.close();
    b.ep.close();
    c.ep.close();
    table.dispose();
    munmap(mapped.addr, MEM_RW_MAX_DATA);
    closeFd(bufferFd);
    for (const p of [a.proc, b.proc, c.proc]) p.kill("SIGTERM");
  }
}
