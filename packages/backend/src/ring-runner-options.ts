/**
 * The options of a `RingRunner`: the device, the memory table, and the runner's reports.
 * @module
 */
import type { GuestMemory, MemoryTable } from "@vhostkit/regions";
import type { PackedInflight, SplitInflight } from "@vhostkit/virtqueue";
import type { DeviceBackend } from "./device-backend.js";

/** Options of a `RingRunner`. */
export interface RingRunnerOptions {
  /** The device: its queue count, its largest queue size and its queue handler. */
  readonly device: Pick<DeviceBackend, "queueCount" | "maxQueueSize" | "processQueue">;
  /**
   * The memory table the rings live in (ring addresses are front-end virtual addresses, as
   * SET_VRING_ADDR gives them). Borrowed; after each change of it, call `RingRunner.remap`.
   */
  readonly memory: MemoryTable;
  /** The guest memory a queue handler gets as `QueueContext.memory`, asked at each run (default `memory`). */
  readonly handlerMemory?: () => GuestMemory;
  /** A guest error, a failed handler or an unusable kick fd broke ring `index`; its err fd was signalled first. */
  readonly onQueueBroken?: (index: number, error: unknown) => void;
  /** `RingRunner.running` changed to `running`; called synchronously, at the change. */
  readonly onRunningChange?: (running: boolean) => void;
  /**
   * Inflight I/O tracking: the inflight region of ring `index`, asked each time the ring starts
   * (`undefined`: untracked). The ring then records every chain in it and first serves what an
   * earlier back-end process left there (docs/protocol.md#inflight-tracking-and-reconnect).
   */
  readonly inflight?: (index: number) => SplitInflight | PackedInflight | undefined;
  /** Ring `index` started with inflight tracking; `resubmitted` chains were left in flight by an earlier back-end. */
  readonly onInflight?: (index: number, resubmitted: number) => void;
  /**
   * How long, in microseconds, a ring is polled after a handler run before notifications are enabled
   * again, the window adapting below it (`ring-poll.ts`; 0: never). Default `VHOSTKIT_RING_POLL_US`, else 0.
   */
  readonly pollMicros?: number;
}
