/**
 * The ring runner without a socket (shared by the ring runner tests): real memfd guest RAM shared
 * with a memory table, the virtqueue driver side as the guest, and eventfds handed to the runner
 * the way the front-end's fds arrive.
 */
import { GuestRam, MemoryTable, guestAddress } from "@vhostkit/regions";
import { EventFd, OwnedFd } from "@vhostkit/transport";
import { dupCloexec } from "@vhostkit/transport/sys";
import { ChainBatch, readChain, writeChain } from "@vhostkit/virtqueue";
import { PackedDriver, SplitDriver } from "@vhostkit/virtqueue/driver";
import { VirtioFeature, isVhostUserError } from "@vhostkit/wire";
import type { QueueContext } from "../../src/index.js";
import { RingRunner } from "../../src/ring-runner.js";

/** The guest's side of a ring, either layout. */
export type Driver = SplitDriver | PackedDriver;

const MiB = 1n << 20n;
/** The features the rig acknowledges (split rings); `PACKED_FEATURES` adds RING_PACKED. */
export const FEATURES = VirtioFeature.VERSION_1 | VirtioFeature.PROTOCOL_FEATURES;
/** {@link FEATURES} with VIRTIO_F_RING_PACKED: the rig's rings are packed. */
export const PACKED_FEATURES = FEATURES | VirtioFeature.RING_PACKED;

/** A device that answers each chain with its readable bytes reversed; `hold` keeps a run going. */
export function reverser() {
  const batch = new ChainBatch(16);
  const state = { runs: 0, active: 0, maxActive: 0, hold: undefined as Promise<void> | undefined, fail: undefined as Error | undefined };
  return {
    state,
    queueCount: 2,
    maxQueueSize: 64,
    async processQueue({ queue, memory }: QueueContext): Promise<void> {
      state.runs++;
      state.maxActive = Math.max(state.maxActive, ++state.active);
      try {
        await state.hold;
        if (state.fail) throw state.fail;
        for (let n; (n = queue.pop(batch)) > 0; ) {
          for (let c = 0; c < n; c++) {
            const data = new Uint8Array(batch.readableBytes[c]!);
            await readChain(queue.segments(batch, c), memory, data);
            await writeChain(queue.segments(batch, c), memory, data.reverse());
            queue.addUsed(batch.heads[c]!, data.length);
          }
        }
      } finally {
        state.active--;
      }
    },
  };
}

/**
 * The runner over 1 MiB of guest RAM; ring `i` is configured at 0x1000 * (i + 1). With `packed`
 * the driver acknowledged RING_PACKED: rings are packed (descriptor ring, driver area at +0x200,
 * device area at +0x400) and driven by a {@link PackedDriver}. `pollMicros`: the runner's polling window.
 */
export function rig({ packed = false, pollMicros }: { readonly packed?: boolean; readonly pollMicros?: number } = {}) {
  const ram = new GuestRam({ blocks: [{ guestPhysAddr: 0n, size: MiB }] });
  const block = ram.memoryTable()[0]!;
  const region = { guestPhysAddr: 0n, memorySize: MiB, userspaceAddr: block.userspaceAddr, mmapOffset: 0n };
  const memory = new MemoryTable();
  const addRam = () => memory.addRegion({ ...region, fd: dupCloexec(block.fd) });
  addRam();
  const device = reverser();
  const events: string[] = [];
  const runner = new RingRunner({
    device,
    memory,
    onQueueBroken: (index, error) => events.push(`broken ${index}: ${error instanceof Error ? error.message : String(error)}`),
    onRunningChange: (running) => events.push(`running ${running}`),
    ...(pollMicros === undefined ? {} : { pollMicros }),
  });
  const features = packed ? PACKED_FEATURES : FEATURES;
  runner.featuresAcked(features);
  const fds: EventFd[] = [];
  /** An eventfd for the test, and a descriptor of it for the runner (which owns and closes it). */
  const eventFd = (): [EventFd, EventFd] => {
    const mine = EventFd.create();
    fds.push(mine);
    return [mine, new EventFd(new OwnedFd(dupCloexec(mine.fd)))];
  };
  const u = (a: bigint) => ram.userAddressOf(guestAddress(a));
  return {
    ram,
    memory,
    device,
    runner,
    events,
    addRam,
    removeRam: () => memory.removeRegion(region),
    /** SET_VRING_NUM / ADDR / CALL / KICK of ring `index` (started enabled: no PROTOCOL_FEATURES ack needed here). */
    start(index: number, size = 8) {
      const base = 0x1000n * BigInt(index + 1);
      const addresses = { desc: base, avail: base + 0x200n, used: base + 0x400n };
      const driver: Driver = packed ? new PackedDriver({ size, memory: ram, addresses }) : new SplitDriver({ size, memory: ram, addresses });
      runner.setSize("SET_VRING_NUM", index, size);
      runner.setAddresses("SET_VRING_ADDR", index, { desc: u(addresses.desc), avail: u(addresses.avail), used: u(addresses.used) }, 0);
      const [call, theirCall] = eventFd();
      runner.setCall("SET_VRING_CALL", index, theirCall);
      const [kick, theirKick] = eventFd();
      runner.setKick("SET_VRING_KICK", index, theirKick, features);
      runner.setEnabled("SET_VRING_ENABLE", index, true);
      return { driver, call, kick };
    },
    /** Queues one request of `text` at 0x10000 + 0x100 * n with a reply buffer after it. */
    async request(driver: Driver, n: number, text: string) {
      const at = 0x10000n + 0x100n * BigInt(n);
      await ram.write(guestAddress(at), new TextEncoder().encode(text));
      driver.add([{ addr: at, len: text.length }], [{ addr: at + 0x80n, len: text.length }]);
      driver.publish();
      return async () => {
        const out = new Uint8Array(text.length);
        await ram.read(guestAddress(at + 0x80n), out);
        return new TextDecoder().decode(out);
      };
    },
    eventFd,
    async dispose() {
      runner.close();
      await runner.quiesce();
      memory.dispose();
      for (const f of fds) f.close();
      ram.dispose();
    },
  };
}

/** A promise and its resolve function. */
export function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

/** An error check: a vhost-user error of `code` whose message matches `text`. */
export const refused = (code: string, text: RegExp) => (e: unknown) => isVhostUserError(e) && e.code === code && text.test(e.message);
