/**
 * Back-end side of the scale benchmark (scale.ts): one process serving `count` null block devices
 * at once, each with 4 queues on its own socket (`<prefix>-<i>.sock`, one `serve` each; a device
 * serves one front-end at a time and takes the next after a disconnect). A request is a 16-byte
 * virtio-blk header and device-writable buffers; the device writes only the status byte (0) into
 * the last writable byte, as qemu's null-co does, so what is measured is the per-message cost of
 * the framework. With a latency, each popped batch waits that long before it completes (a slow
 * disk: the device then leaves the CPU idle). Prints `listening` once every socket accepts; SIGUSR2
 * runs a full GC (before an RSS reading); SIGTERM ends it.
 *   bun scale-backend.ts <socket-prefix> <count> [latency-ms]
 */
import { serve, type DeviceBackend, type QueueContext } from "@vhostkit/backend";
import { ChainBatch } from "@vhostkit/virtqueue";

/** Queues per device. */
export const SCALE_QUEUES = 4;

/**
 * A null block device with {@link SCALE_QUEUES} queues; each queue has its own batch (queues run
 * concurrently). `latencyMs` > 0: every popped batch completes that long after it was popped.
 */
export function nullBlk(latencyMs = 0): DeviceBackend {
  const batches = Array.from({ length: SCALE_QUEUES }, () => new ChainBatch(256));
  return {
    features: 0n,
    queueCount: SCALE_QUEUES,
    maxQueueSize: 1024,
    async processQueue({ index, queue, notify }: QueueContext): Promise<void> {
      const batch = batches[index] as ChainBatch;
      for (let n: number; (n = queue.pop(batch)) > 0; ) {
        if (latencyMs > 0) await new Promise((r) => setTimeout(r, latencyMs));
        for (let c = 0; c < n; c++) {
          const cur = queue.segments(batch, c);
          let last: Uint8Array | undefined;
          while (cur.next()) if (cur.writable && cur.kind === "host") last = cur.bytes;
          if (last !== undefined && last.length > 0) last[last.length - 1] = 0;
          queue.addUsed(batch.head(c), batch.writableBytes[c] ?? 0);
        }
        if (latencyMs > 0) notify();
      }
    },
  };
}

if (import.meta.main) {
  const [prefix, countArg, latencyArg] = process.argv.slice(2);
  if (prefix === undefined) throw new Error("usage: scale-backend.ts <socket-prefix> <count> [latency-ms]");
  const servers = Array.from({ length: Number(countArg ?? 16) }, (_, i) => serve(`${prefix}-${i}.sock`, nullBlk(Number(latencyArg ?? 0))));
  process.on("SIGUSR2", () => Bun.gc(true)); // scale-frontend.ts asks before it reads this process's RSS
  console.log("listening");
  process.on("SIGTERM", () => {
    for (const s of servers) s.close();
    process.exit(0);
  });
}
