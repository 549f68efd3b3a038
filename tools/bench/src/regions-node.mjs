// Measurement loop of the regions benchmark, run as a child under Bun (process.execPath) and Node:
// SHMEM_MAP + SHMEM_UNMAP pairs through the public @vhostkit/regions API (built dist/).
// Usage: regions-node.mjs <len> <pairs>. Prints nanoseconds per pair (last line).
// map() takes ownership of its fd and closes it at unmap, so every pair passes a fresh dup: the
// stand-in for the SCM_RIGHTS fd each SHMEM_MAP brings.
import { DeviceSharedMemory, guestAddress, SHMEM_MAP_FLAG_RW } from "@vhostkit/regions";
import { dupCloexec, sealedMemfd } from "@vhostkit/transport/sys";

const len = BigInt(process.argv[2] ?? 4096);
const pairs = Number(process.argv[3] ?? 10000);
const fd = sealedMemfd("bench", len); // SHMEM_MAP refuses memfds that could still shrink
if (fd < 0) process.exit(1);
const dev = new DeviceSharedMemory({ sizes: [len * 4n], guestPhysAddr: guestAddress(0x1_0000_0000n) });
const once = () => {
  dev.map(0, 0n, len, dupCloexec(fd), 0n, SHMEM_MAP_FLAG_RW);
  dev.unmap(0, 0n, len);
};
for (let i = 0; i < Math.min(1000, pairs); i++) once(); // warm-up (JIT)
const t0 = process.hrtime.bigint();
for (let i = 0; i < pairs; i++) once();
const ns = Number(process.hrtime.bigint() - t0) / pairs;
dev.dispose();
console.log(ns.toFixed(1));
