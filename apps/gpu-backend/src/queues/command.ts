/**
 * What the control and cursor queues share: the command environment, the typed command failure,
 * response building, and the pop → read → handle → write → used loop.
 * @module
 */
import type { QueueContext } from "@vhostkit/backend";
import { readChain, writeChain, type ChainBatch } from "@vhostkit/virtqueue";
import type { Frame, GpuState } from "../resources.js";
import { decodeHdr, encodeHdr, GpuFlag, GpuResp, HDR_SIZE, REQUEST_SIZE, respName, type CtrlHdr } from "../virtio-gpu.js";

/** Sends SHMEM_MAP / SHMEM_UNMAP for shmid 1 (implemented by the device over the back-end channel). */
export interface ShmemMapper {
  /** True while a map may be sent: the device runs, SHMEM and the back-end channel were negotiated. */
  canMap(): boolean;
  /** SHMEM_MAP of `len` bytes of `fd` (borrowed) at `offset`, read-write; resolves once the front-end acked. */
  map(offset: bigint, len: bigint, fd: number): Promise<void>;
  /** SHMEM_UNMAP of exactly one earlier mapping. */
  unmap(offset: bigint, len: bigint): Promise<void>;
}

/** One handled command, for logs and tests. */
export interface CommandEvent {
  readonly queue: "control" | "cursor";
  /** Command type (0 when the request was too short for a header). */
  readonly type: number;
  /** Response type sent (or that would have been sent on cursorq without a reply buffer). */
  readonly resp: number;
  /** Resource the command named, if any. */
  readonly resourceId?: number;
  /** Context of the request header (`ctx_id`), when not 0. */
  readonly ctxId?: number;
  /** Capset of a context CTX_CREATE made (0: none named). */
  readonly capsetId?: number;
  /** Why the command failed. */
  readonly message?: string;
}

/** Everything a command handler may touch. */
export interface GpuEnv {
  readonly state: GpuState;
  /** Preferred mode of scanout 0 (GET_DISPLAY_INFO). */
  readonly display: { readonly width: number; readonly height: number };
  /** The EDID block GET_EDID returns, or `undefined` when EDID is not offered. */
  readonly edid: Uint8Array | undefined;
  /** Size of shmid 1, bytes. */
  readonly shmSize: bigint;
  /** Alignment of RESOURCE_MAP_BLOB offsets (the page size, reported as blob_alignment). */
  readonly blobAlignment: bigint;
  /** Cap on host memory for resources, bytes. */
  readonly maxHostBytes: bigint;
  /** The virtio features the driver acknowledged. */
  readonly features: () => bigint;
  readonly mapper: ShmemMapper;
  /** Receives each scanout on RESOURCE_FLUSH; awaited before the command completes. */
  readonly onFrame: ((frame: Frame) => void | Promise<void>) | undefined;
  /** Receives every handled command. */
  readonly onCommand: ((e: CommandEvent) => void) | undefined;
}

/** A command the device refuses: becomes a response of type `resp`. */
export class GpuCommandError extends Error {
  /** The error response type (ERR_*). */
  readonly resp: number;

  constructor(resp: number, message: string) {
    super(message);
    this.name = "GpuCommandError";
    this.resp = resp;
  }
}

/** Throws a {@link GpuCommandError} unless `ok`. */
export function check(ok: boolean, resp: number, message: string): asserts ok {
  if (!ok) throw new GpuCommandError(resp, message);
}

/**
 * A response of `size` bytes whose header echoes FENCE + fence_id and INFO_RING_IDX + ring_idx
 * (and ctx_id) of the request, as QEMU does.
 */
export function response(req: CtrlHdr, type: number, size = HDR_SIZE): Uint8Array {
  const out = new Uint8Array(size);
  const fence = req.flags & GpuFlag.FENCE;
  const ring = req.flags & GpuFlag.INFO_RING_IDX;
  encodeHdr(out, { type, flags: fence | ring, fenceId: fence !== 0 ? req.fenceId : 0n, ctxId: req.ctxId, ringIdx: ring !== 0 ? req.ringIdx : 0 });
  return out;
}

const NO_HDR: CtrlHdr = { type: 0, flags: 0, fenceId: 0n, ctxId: 0, ringIdx: 0 };

/** A decoded request: header and body view (the whole request, header included). */
export interface Request {
  readonly hdr: CtrlHdr;
  readonly bytes: Uint8Array;
  readonly view: DataView;
}

/** What a handler returns: the response bytes, the resource it concerned, the capset of a new context. */
export interface Handled {
  readonly resp: Uint8Array;
  readonly resourceId?: number;
  readonly capsetId?: number;
}

/**
 * Runs `handle` on a request and turns every failure into an error response: too short for a
 * header or for the command's fixed size → ERR_UNSPEC (as QEMU), a {@link GpuCommandError} → its
 * response type, anything else (a guest-memory fault while copying backing, a host failure) →
 * ERR_UNSPEC. Never throws.
 */
export async function execute(env: GpuEnv, queue: CommandEvent["queue"], bytes: Uint8Array, handle: (r: Request) => Promise<Handled>): Promise<Uint8Array> {
  const hdr = bytes.byteLength >= HDR_SIZE ? decodeHdr(bytes) : NO_HDR;
  let out: Uint8Array;
  let resourceId: number | undefined;
  let capsetId: number | undefined;
  let message: string | undefined;
  try {
    check(bytes.byteLength >= HDR_SIZE, GpuResp.ERR_UNSPEC, `request of ${bytes.byteLength} bytes is shorter than the 24-byte header`);
    const need = REQUEST_SIZE[hdr.type];
    check(
      need === undefined || bytes.byteLength >= need,
      GpuResp.ERR_UNSPEC,
      `command 0x${hdr.type.toString(16)}: request of ${bytes.byteLength} bytes, needs ${need}`,
    );
    const h = await handle({ hdr, bytes, view: new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength) });
    out = h.resp;
    resourceId = h.resourceId;
    capsetId = h.capsetId;
  } catch (err) {
    const resp = err instanceof GpuCommandError ? err.resp : GpuResp.ERR_UNSPEC;
    message = err instanceof Error ? err.message : String(err);
    out = response(hdr, resp);
  }
  const resp = new DataView(out.buffer, out.byteOffset, 4).getUint32(0, true);
  env.onCommand?.({
    queue,
    type: hdr.type,
    resp,
    ...(resourceId === undefined ? {} : { resourceId }),
    ...(hdr.ctxId === 0 ? {} : { ctxId: hdr.ctxId }),
    ...(capsetId === undefined ? {} : { capsetId }),
    ...(message === undefined ? {} : { message: `${respName(resp).toLowerCase()}: ${message}` }),
  });
  return out;
}

/** Largest request read from a chain: ATTACH_BACKING with 16384 entries. */
export const MAX_REQUEST_BYTES = 32 + 16384 * 16;

/**
 * Pops every available chain, reads its device-readable part (at most {@link MAX_REQUEST_BYTES}),
 * asks `serve` for the response and writes as much of it as the device-writable part holds (a
 * short buffer gets a truncated response; none gets nothing, as on QEMU's cursorq). Guest errors
 * in the chain itself (VirtqueueError) propagate: the framework marks the queue broken.
 */
export async function serveChains(ctx: QueueContext, batch: ChainBatch, serve: (req: Uint8Array) => Promise<Uint8Array>): Promise<void> {
  const { queue, memory } = ctx;
  for (let n; (n = queue.pop(batch)) > 0; ) {
    for (let c = 0; c < n; c++) {
      const req = new Uint8Array(Math.min(batch.readableBytes[c] as number, MAX_REQUEST_BYTES));
      await readChain(queue.segments(batch, c), memory, req);
      const resp = await serve(req);
      const room = batch.writableBytes[c] as number;
      const len = room === 0 ? 0 : await writeChain(queue.segments(batch, c), memory, resp.subarray(0, Math.min(resp.byteLength, room)));
      queue.addUsed(batch.heads[c] as number, len);
    }
    ctx.notify();
  }
}
