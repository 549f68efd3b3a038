/**
 * The inflight area of one connection (docs/protocol.md#inflight-tracking-and-reconnect): the
 * memory GET_INFLIGHT_FD allocates and SET_INFLIGHT_FD hands back, one queue region per queue (the
 * split-ring or the packed-ring layout, as VIRTIO_F_RING_PACKED was negotiated), where the rings
 * record the chains they have taken and not yet completed.
 * @module
 */
import { OwnedFd } from "@vhostkit/transport";
import {
  addSeals,
  describeErrno,
  fstatSize,
  getSeals,
  MAP,
  mmanErrno,
  mmapOrErrno,
  munmap,
  nativeView,
  pointerAt,
  PROT,
  SEAL,
  sealedMemfd,
} from "@vhostkit/transport/sys";
import {
  isValidPackedQueueSize,
  isValidQueueSize,
  PackedInflight,
  packedInflightQueueBytes,
  SplitInflight,
  splitInflightQueueBytes,
} from "@vhostkit/virtqueue";
import { MAX_VRING_SIZE, type InflightInfo } from "@vhostkit/wire";
import { BackendError, protocolError } from "./errors.js";

const PAGE = 4096n;

/**
 * Checks the queue count and size of a GET_INFLIGHT_FD / SET_INFLIGHT_FD (`request`) against the
 * device's `queueCount` (a packed ring's size need not be a power of two).
 * @returns the bytes the area needs.
 * @throws BackendError `PROTOCOL`.
 */
function areaBytes(request: string, info: InflightInfo, queueCount: number, packed: boolean): number {
  if (info.numQueues < 1 || info.numQueues > queueCount)
    throw protocolError(request, `num_queues ${info.numQueues} not in 1..${queueCount}`, { expected: queueCount, actual: info.numQueues });
  const valid = packed ? isValidPackedQueueSize(info.queueSize) : isValidQueueSize(info.queueSize);
  if (!valid || info.queueSize > MAX_VRING_SIZE)
    throw protocolError(request, `queue_size ${info.queueSize} is not ${packed ? "in 1.." : "a power of two <= "}${MAX_VRING_SIZE}`, {
      actual: info.queueSize,
    });
  return info.numQueues * queueBytes(info.queueSize, packed);
}

/** Bytes of one queue's region. */
function queueBytes(queueSize: number, packed: boolean): number {
  return packed ? packedInflightQueueBytes(queueSize) : splitInflightQueueBytes(queueSize);
}

/**
 * One mapped inflight area. The mapping lives until {@link InflightArea.dispose}, which must run
 * only once no ring uses one of its queues (the rings are stopped and no handler runs).
 */
export class InflightArea {
  /** Queues the area has a region for. */
  readonly numQueues: number;
  /** Descriptors per queue region. */
  readonly queueSize: number;
  /** The regions are in the packed-ring layout (VIRTIO_F_RING_PACKED was negotiated when the area was set). */
  readonly packed: boolean;
  readonly #addr: bigint;
  readonly #len: number;
  #bytes: Uint8Array | undefined;
  #disposed = false;

  private constructor(addr: bigint, len: number, info: InflightInfo, packed: boolean) {
    this.#addr = addr;
    this.#len = len;
    this.numQueues = info.numQueues;
    this.queueSize = info.queueSize;
    this.packed = packed;
  }

  /**
   * GET_INFLIGHT_FD: a zeroed area for `info.numQueues` queues of `info.queueSize` descriptors in a
   * memfd sealed against shrinking, growing and further sealing, mapped here too; in the packed-ring
   * layout when `packed`.
   * @returns the area, the fd for the reply (owned by the caller, who closes it once sent) and the reply.
   * @throws BackendError `PROTOCOL` (queue count or size), `UNSUPPORTED` (the memfd or its mapping failed).
   */
  static allocate(request: string, info: InflightInfo, queueCount: number, packed: boolean): { area: InflightArea; fd: OwnedFd; reply: InflightInfo } {
    const len = areaBytes(request, info, queueCount, packed);
    const raw = sealedMemfd("vhostkit-inflight", BigInt(len));
    if (raw < 0) throw new BackendError("UNSUPPORTED", `${request.toLowerCase()}: memfd of 0x${len.toString(16)} bytes: ${describeErrno(-raw)}`, { request });
    const fd = new OwnedFd(raw);
    try {
      if (addSeals(fd.fd, SEAL.SEAL) !== 0)
        throw new BackendError("UNSUPPORTED", `${request.toLowerCase()}: sealing the inflight memfd: ${describeErrno(mmanErrno())}`, { request });
      const area = InflightArea.#map(request, fd.fd, 0n, len, info, packed);
      return { area, fd, reply: { mmapSize: BigInt(len), mmapOffset: 0n, numQueues: info.numQueues, queueSize: info.queueSize } };
    } catch (err) {
      fd.close();
      throw err;
    }
  }

  /**
   * SET_INFLIGHT_FD: maps the area the front-end hands back (`fd` borrowed). The fd must be a
   * regular file sealed against shrinking (a truncated mapping would kill this process with
   * SIGBUS), `mmap_offset` page-aligned, `mmap_size` at least what the queues need, and the file
   * must hold `mmap_offset + mmap_size` bytes: nothing outside the file is ever viewed. The regions
   * are read in the packed-ring layout when `packed`.
   * @throws BackendError `PROTOCOL` for any of those, `UNSUPPORTED` when the mapping fails.
   */
  static attach(request: string, info: InflightInfo, fd: OwnedFd, queueCount: number, packed: boolean): InflightArea {
    const len = areaBytes(request, info, queueCount, packed);
    if (info.mmapSize < BigInt(len))
      throw protocolError(request, `mmap_size 0x${info.mmapSize.toString(16)} < 0x${len.toString(16)} for ${info.numQueues} queues of ${info.queueSize}`, {
        expected: len,
        actual: info.mmapSize,
      });
    if (info.mmapOffset % PAGE !== 0n)
      throw protocolError(request, `mmap_offset 0x${info.mmapOffset.toString(16)} not page-aligned`, { offset: info.mmapOffset });
    const st = fstatSize(fd.fd);
    if (st === undefined || !st.regular) throw protocolError(request, "the inflight fd is not a regular file");
    if (st.size < info.mmapOffset + info.mmapSize)
      throw protocolError(request, `file of 0x${st.size.toString(16)} bytes, area ends at 0x${(info.mmapOffset + info.mmapSize).toString(16)}`, {
        expected: info.mmapOffset + info.mmapSize,
        actual: st.size,
      });
    const seals = getSeals(fd.fd);
    if (seals < 0 || (seals & SEAL.SHRINK) === 0) throw protocolError(request, "the inflight fd is not sealed against shrinking (F_SEAL_SHRINK)");
    return InflightArea.#map(request, fd.fd, info.mmapOffset, len, info, packed);
  }

  static #map(request: string, fd: number, offset: bigint, len: number, info: InflightInfo, packed: boolean): InflightArea {
    const r = mmapOrErrno(0n, len, PROT.READ | PROT.WRITE, MAP.SHARED, fd, offset);
    if (!r.ok) throw new BackendError("UNSUPPORTED", `${request.toLowerCase()}: mmap of the inflight area: ${describeErrno(r.errno)}`, { request });
    return new InflightArea(r.addr, len, info, packed);
  }

  /**
   * The region of queue `index`, or `undefined` when the area has none for it (the queue then runs
   * untracked). Views stay valid until {@link InflightArea.dispose}.
   */
  queue(index: number): SplitInflight | PackedInflight | undefined {
    if (index < 0 || index >= this.numQueues || this.#disposed) return undefined;
    // SAFETY: the view is made once, over exactly the mapped bytes, and dropped before the munmap.
    this.#bytes ??= new Uint8Array(nativeView(pointerAt(this.#addr), this.#len));
    const per = queueBytes(this.queueSize, this.packed);
    const region = this.#bytes.subarray(index * per, (index + 1) * per);
    return this.packed ? new PackedInflight(region, this.queueSize) : new SplitInflight(region, this.queueSize);
  }

  /** Unmaps the area. Only once no ring uses it. Idempotent. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#bytes = undefined;
    // SAFETY: the caller guarantees no queue still holds a view; `#addr` maps `#len` bytes of ours.
    munmap(this.#addr, this.#len);
  }
}
