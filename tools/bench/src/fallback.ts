/**
 * Fallback benchmark (issue 9): a back-end reads guest memory that lies outside its memory table.
 * (a) direct: the range is in the table (as after eager propagation) — a copy out of the mapping;
 * (b) MEM_READ: vhostkit's extension over a real back-end channel (socketpair), served by the
 * front-end's BackendRequestHandler from its guest space. 4 KiB and 64 KiB reads, interleaved in the
 * same run; prints GB/s and MEM_READ ÷ direct. Target: MEM_READ >= 2 GB/s at 64 KiB.
 */
import { BackendClient } from "@vhostkit/backend";
import { FallbackMemory } from "@vhostkit/fallback";
import { BackendRequestHandler } from "@vhostkit/frontend";
import { GuestAddressSpace, GuestRam, MemoryTable, guestAddress } from "@vhostkit/regions";
import { Endpoint, socketPair } from "@vhostkit/transport";
import { MEM_RW_MAX_PAYLOAD, UPSTREAM } from "@vhostkit/wire";
import { median, table } from "./harness.js";

async function measure(read: (dst: Uint8Array) => Promise<void>, size: number, bytes: number): Promise<number> {
  const dst = new Uint8Array(size);
  for (let i = 0; i < 20; i++) await read(dst);
  const n = Math.max(20, Math.floor(bytes / size));
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await read(dst);
  return (n * size) / Number(process.hrtime.bigint() - t0); // bytes per ns = GB/s
}

/** Run the fallback benchmark and print its table. */
export async function run(): Promise<void> {
  const MiB = 1n << 20n;
  const ram = new GuestRam({ blocks: [{ guestPhysAddr: 0n, size: 4n * MiB }] });
  const space = new GuestAddressSpace(ram);
  const [fe, be] = socketPair();
  const handler = new BackendRequestHandler(new Endpoint(fe, { maxPayload: MEM_RW_MAX_PAYLOAD }), { dialect: UPSTREAM, replyAck: true, backendSendFd: false, memAccess: space });
  void handler.start();
  const client = new BackendClient(new Endpoint(be, { maxPayload: MEM_RW_MAX_PAYLOAD }), { replyAck: true, shmem: false, sendFd: false, config: false, memRw: true, isRunning: () => true });
  const emptyTable = new MemoryTable();
  const remote = new FallbackMemory(emptyTable, client);
  const addr = guestAddress(MiB);
  const rows: (string | number)[][] = [];
  for (const size of [4096, 65536]) {
    const direct: number[] = [];
    const memRead: number[] = [];
    for (let round = 0; round < 5; round++) {
      direct.push(await measure((dst) => ram.read(addr, dst), size, 64 << 20));
      memRead.push(await measure((dst) => remote.read(addr, dst), size, 16 << 20));
    }
    const d = median(direct);
    const m = median(memRead);
    rows.push([`${size / 1024} KiB`, d.toFixed(2), m.toFixed(3), (m / d).toFixed(3)]);
  }
  console.log("reads of guest memory outside the back-end's table, GB/s (median of 5 interleaved rounds); target MEM_READ >= 2 GB/s at 64 KiB");
  table(["size", "direct (propagated)", "MEM_READ", "MEM_READ ÷ direct"], rows);
  client.close();
  handler.close();
  emptyTable.dispose();
  ram.dispose();
}
