/**
 * Message tracing (`vhost-user-device --verbose`).
 * @module
 */
import type { Channel } from "@vhostkit/wire";

/** One message seen by the front-end, on either socket. */
export interface TraceEvent {
  /** `"frontend"` = the main socket (front-end requests), `"backend"` = the back-end channel. */
  readonly channel: Channel;
  /** `"send"` when the front-end wrote it, `"recv"` when it read it. */
  readonly direction: "send" | "recv";
  /** Spec name of the request (for replies: the request answered), or `UNKNOWN(0x..)`. */
  readonly name: string;
  /** Header flags word (u32). */
  readonly flags: number;
  /** Payload size in bytes (header excluded). */
  readonly size: number;
  /** Number of fds attached. */
  readonly fds: number;
}

/** Receives every {@link TraceEvent}; must not throw (exceptions are ignored). */
export type TraceSink = (event: TraceEvent) => void;
