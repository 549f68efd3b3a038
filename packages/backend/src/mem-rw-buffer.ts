/**
 * The back-end's mapping of the front-end's shared data buffer of vhostkit MEM_READ / MEM_WRITE
 * revision 2 (docs/shmem.md#shared-data-buffer-revision-2): the fd that came with the reply to the
 * first in-buffer MEM_READ, accepted only if it is a regular file of exactly 64 KiB sealed against
 * shrinking (so the front-end cannot truncate it under this mapping and make this process fault).
 * @module
 */
import type { OwnedFd } from "@vhostkit/transport";
import { MAP, PROT, SEAL, describeErrno, fstatSize, getSeals, mmapOrErrno, munmap, nativeView, pointerAt } from "@vhostkit/transport/sys";
import { MEM_RW_FLAG_IN_BUFFER, MEM_RW_MAX_DATA, decodeMemAccessHeadFlags } from "@vhostkit/wire";

/** @internal */
export class BackendDataBuffer {
  /** The mapping, {@link MEM_RW_MAX_DATA} bytes; never touched after {@link BackendDataBuffer.dispose}. */
  readonly bytes: Uint8Array;
  readonly #addr: bigint;

  private constructor(addr: bigint) {
    this.#addr = addr;
    this.bytes = new Uint8Array(nativeView(pointerAt(addr), MEM_RW_MAX_DATA));
  }

  /**
   * Checks and maps `fd` (closed here in every case; the mapping outlives it).
   * @returns the buffer, or why `fd` was not accepted.
   */
  static adopt(fd: OwnedFd): BackendDataBuffer | string {
    try {
      const st = fstatSize(fd.fd);
      if (st === undefined || !st.regular || st.size !== BigInt(MEM_RW_MAX_DATA))
        return `the shared buffer is not a regular file of 0x${MEM_RW_MAX_DATA.toString(16)} bytes (${st === undefined ? "fstat failed" : `size 0x${st.size.toString(16)}`})`;
      const seals = getSeals(fd.fd);
      if (seals < 0 || (seals & SEAL.SHRINK) === 0) return "the shared buffer is not sealed against shrinking";
      const m = mmapOrErrno(0n, MEM_RW_MAX_DATA, PROT.READ | PROT.WRITE, MAP.SHARED, fd.fd, 0n);
      if (!m.ok) return `the shared buffer cannot be mapped: ${describeErrno(m.errno)}`;
      return new BackendDataBuffer(m.addr);
    } finally {
      fd.close();
    }
  }

  /** Unmaps; the caller drops every reference to {@link BackendDataBuffer.bytes} first. */
  dispose(): void {
    // SAFETY: the client touches `bytes` only inside a request's serial slot; it disposes after closing.
    munmap(this.#addr, MEM_RW_MAX_DATA);
  }
}

/**
 * The buffer that came with the reply to the first in-buffer MEM_READ: taken out of `fds` when it
 * is the only one there and acceptable ({@link BackendDataBuffer.adopt}), else `undefined` (the
 * client then reads inline; fds left in the list are the caller's to close).
 * @internal
 */
export function adoptFromReply(fds: OwnedFd[]): BackendDataBuffer | undefined {
  const fd = fds.length === 1 ? fds.pop() : undefined;
  const got = fd === undefined ? undefined : BackendDataBuffer.adopt(fd);
  return typeof got === "string" ? undefined : got;
}

/**
 * Checks the 16-byte reply to an in-buffer MEM_READ of `len` bytes at `gpa`: `"ok"` (the data is in
 * the buffer), `"refused"` (size 0: the front-end could not read the range), or why it is malformed.
 * @internal
 */
export function inBufferReadEcho(payload: Uint8Array, gpa: bigint, len: number): "ok" | "refused" | string {
  let echo: { guestAddress: bigint; size: number; flags: number };
  try {
    echo = decodeMemAccessHeadFlags("BACKEND_MEM_READ", payload);
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
  if (echo.flags !== MEM_RW_FLAG_IN_BUFFER) return `flags 0x${echo.flags.toString(16)}, expected the in-buffer flag echoed`;
  if (echo.guestAddress !== gpa || (echo.size !== 0 && echo.size !== len))
    return `echoes 0x${echo.size.toString(16)} bytes at 0x${echo.guestAddress.toString(16)}, asked 0x${len.toString(16)} at 0x${gpa.toString(16)}`;
  return echo.size === 0 ? "refused" : "ok";
}
