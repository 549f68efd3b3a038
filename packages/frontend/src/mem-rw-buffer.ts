/**
 * The front-end's shared data buffer of vhostkit MEM_READ / MEM_WRITE revision 2
 * (docs/shmem.md#shared-data-buffer-revision-2): one memfd of 64 KiB per back-end channel, created
 * and sealed here (never a back-end's fd: nothing the back-end does to it can make this process
 * fault), mapped here, and handed to the back-end once, with the reply to its first in-buffer
 * MEM_READ. Only the offsets 0..size of one request are ever touched, synchronously while that
 * request is served.
 * @module
 */
import { MAP, PROT, SEAL, addSeals, closeFd, describeErrno, mmapOrErrno, munmap, nativeView, pointerAt, sealedMemfd } from "@vhostkit/transport/sys";
import { Errno } from "@vhostkit/transport";
import { guestAddress, translateRange, type GuestMemory } from "@vhostkit/regions";
import { MEM_RW_FLAG_IN_BUFFER, MEM_RW_HEADER_SIZE, MEM_RW_MAX_DATA, decodeMemAccessHeadFlags, encodeMemAccessHead } from "@vhostkit/wire";
import { FrontendError } from "./errors.js";

/** @internal */
export class FrontendDataBuffer {
  /** The memfd (owned; sent to the back-end as a borrowed fd). */
  readonly fd: number;
  /** The mapping, {@link MEM_RW_MAX_DATA} bytes; never touched after {@link FrontendDataBuffer.dispose}. */
  readonly bytes: Uint8Array;
  readonly #addr: bigint;
  /** The fd went to the back-end with a reply. */
  handedOver = false;

  private constructor(fd: number, addr: bigint) {
    this.fd = fd;
    this.#addr = addr;
    this.bytes = new Uint8Array(nativeView(pointerAt(addr), MEM_RW_MAX_DATA));
  }

  /**
   * A new buffer: memfd sealed against shrinking, growing and further seals, mapped shared.
   * @throws FrontendError `OUT_OF_MEMORY` with the errno when the memfd or the mapping fails.
   */
  static create(): FrontendDataBuffer {
    const fd = sealedMemfd("vhostkit-mem-rw-buffer", BigInt(MEM_RW_MAX_DATA));
    if (fd < 0) throw new FrontendError("OUT_OF_MEMORY", `mem-rw buffer: memfd: ${describeErrno(-fd)}`, { request: "BACKEND_MEM_READ" });
    // No new seal either: the back-end cannot seal writes away under this process's mapping.
    const sealed = addSeals(fd, SEAL.SEAL) === 0;
    const m = sealed ? mmapOrErrno(0n, MEM_RW_MAX_DATA, PROT.READ | PROT.WRITE, MAP.SHARED, fd, 0n) : undefined;
    if (m === undefined || !m.ok) {
      closeFd(fd);
      throw new FrontendError("OUT_OF_MEMORY", `mem-rw buffer: ${m === undefined ? "F_ADD_SEALS failed" : `mmap: ${describeErrno(m.errno)}`}`, {
        request: "BACKEND_MEM_READ",
      });
    }
    return new FrontendDataBuffer(fd, m.addr);
  }

  /** Unmaps and closes; the caller drops every reference to {@link FrontendDataBuffer.bytes} first. */
  dispose(): void {
    // SAFETY: served requests touch `bytes` only synchronously; the handler disposes after its last one.
    munmap(this.#addr, MEM_RW_MAX_DATA);
    closeFd(this.fd);
  }
}

/** What serving one in-buffer request produced: the reply payload (borrowed scratch), the fds to attach, the outcome. @internal */
export interface InBufferReply {
  readonly payload: Uint8Array;
  readonly fds: readonly number[];
  /** 0n: served; otherwise the errno of the refusal. */
  readonly status: bigint;
  readonly reason?: string;
}

class BufferRefusal extends Error {
  readonly status: bigint;
  constructor(errno: number, message: string) {
    super(message);
    this.status = BigInt(errno);
  }
}

/**
 * Serves revision 2 requests of one back-end channel (docs/shmem.md#shared-data-buffer-revision-2)
 * out of its {@link FrontendDataBuffer}, created on the first in-buffer MEM_READ and handed over
 * with its reply (success or not). The whole range is translated (and checked writable for a
 * write) before a byte moves, and the copy runs synchronously, so no mapping changes in between.
 * @internal
 */
export class InBufferServer {
  #buffer: FrontendDataBuffer | undefined;
  #disposed = false;
  readonly #head = new Uint8Array(MEM_RW_HEADER_SIZE);
  readonly #status = new Uint8Array(8);

  /**
   * One in-buffer MEM_READ (`read`) or MEM_WRITE whose 16-byte payload is `payload` and that came
   * with `fdCount` fds (refused when not 0). Never throws: failures become the failure reply.
   * @param statusOf - the errno a translation error is refused with.
   */
  serve(memory: GuestMemory, read: boolean, payload: Uint8Array, fdCount: number, statusOf: (err: unknown) => bigint): InBufferReply {
    const name = read ? "BACKEND_MEM_READ" : "BACKEND_MEM_WRITE";
    let gpa = payload.byteLength >= 8 ? new DataView(payload.buffer, payload.byteOffset, 8).getBigUint64(0, true) : 0n;
    let size = 0;
    let fds: readonly number[] = [];
    let status = 0n;
    let reason: string | undefined;
    try {
      if (this.#disposed) throw new BufferRefusal(Errno.EINVAL, `${name.toLowerCase()}: channel closed`);
      if (fdCount !== 0) throw new BufferRefusal(Errno.EINVAL, `${name.toLowerCase()}: ${fdCount} fds attached, expected none`);
      let head: { guestAddress: bigint; size: number; flags: number };
      try {
        head = decodeMemAccessHeadFlags(name, payload);
      } catch (err) {
        throw new BufferRefusal(Errno.EINVAL, err instanceof Error ? err.message : String(err));
      }
      gpa = head.guestAddress;
      if (head.size === 0) throw new BufferRefusal(Errno.EINVAL, `${name.toLowerCase()}: size 0`);
      if (read && this.#buffer === undefined) {
        try {
          this.#buffer = FrontendDataBuffer.create();
        } catch (err) {
          throw new BufferRefusal(Errno.ENOMEM, err instanceof Error ? err.message : String(err));
        }
      }
      const buffer = this.#buffer;
      if (buffer === undefined) throw new BufferRefusal(Errno.EINVAL, `${name.toLowerCase()}: data in the shared buffer before the buffer was handed over`);
      // The buffer goes with the reply to the first in-buffer MEM_READ, whatever becomes of it.
      if (read && !buffer.handedOver) fds = [buffer.fd];
      const spans = translateRange(memory, guestAddress(gpa), head.size, !read);
      let at = 0;
      for (const s of spans) {
        if (read) buffer.bytes.set(s.bytes, at);
        else s.bytes.set(buffer.bytes.subarray(at, at + s.bytes.byteLength));
        at += s.bytes.byteLength;
      }
      size = head.size;
    } catch (err) {
      status = err instanceof BufferRefusal ? err.status : statusOf(err);
      reason = err instanceof Error ? err.message : String(err);
    }
    if (fds.length !== 0 && this.#buffer !== undefined) this.#buffer.handedOver = true;
    let reply: Uint8Array;
    if (read) reply = encodeMemAccessHead(name, gpa, status === 0n ? size : 0, this.#head, MEM_RW_FLAG_IN_BUFFER);
    else {
      new DataView(this.#status.buffer).setBigUint64(0, status, true);
      reply = this.#status;
    }
    return { payload: reply, fds, status, ...(reason === undefined ? {} : { reason }) };
  }

  /** The channel ended: the buffer goes (unmapped, its fd closed); later requests are refused. Idempotent. */
  dispose(): void {
    this.#disposed = true;
    this.#buffer?.dispose();
    this.#buffer = undefined;
  }
}
