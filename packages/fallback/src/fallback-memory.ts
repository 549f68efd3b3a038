/**
 * Guest memory for a back-end that may meet addresses outside its memory table (a buffer in another
 * device's VIRTIO Shared Memory Region): direct access where the table translates, vhostkit's
 * MEM_READ / MEM_WRITE (docs/shmem.md#vhostkit-memory-access-extension) through the front-end elsewhere, with bounce buffers.
 * @module
 */
import { translateRange, type GuestAddress, type GuestMemory, type TranslateResult, type UserAddress } from "@vhostkit/regions";
import { MEM_RW_MAX_DATA } from "@vhostkit/wire";
import { FallbackError } from "./errors.js";

/**
 * The MEM_READ / MEM_WRITE requests on a back-end channel (`@vhostkit/backend`'s `BackendClient`
 * has this shape). Each call moves at most 64 KiB and resolves only after the front-end replied, so
 * a write is visible to the guest before the device publishes the used element that covers it.
 */
export interface MemAccessChannel {
  /** Fill `dst` (1..65536 bytes, borrowed) from guest-physical `gpa`; `dst` is untouched when the front-end refuses. */
  memReadInto(gpa: bigint, dst: Uint8Array): Promise<void>;
  /** Write `data` (1..65536 bytes, borrowed) at guest-physical `gpa`; nothing is written on failure. */
  memWrite(gpa: bigint, data: Uint8Array): Promise<void>;
}

/** Options of {@link FallbackMemory}. */
export interface FallbackMemoryOptions {
  /** Largest MEM_READ/MEM_WRITE piece in bytes (1..65536; default 65536). */
  readonly chunk?: number;
}

const U64_END = 1n << 64n;

/**
 * A {@link GuestMemory} over a direct table (the back-end's memory table) plus a MEM_READ/MEM_WRITE
 * channel. `translate` is the direct table's (a miss stays a miss, so `@vhostkit/virtqueue` yields
 * a `"remote"` segment), while `read` and `write` serve every byte, going to the front-end for the
 * parts the table cannot translate. Device code written against the segment API (`readChain`,
 * `writeChain`) therefore works unchanged.
 *
 * Ordering: pieces are sent one at a time and each waits for its reply. Atomicity across pieces is
 * not promised (docs/shmem.md#extension-rules, rule 9): to the guest it behaves like device DMA.
 */
export class FallbackMemory implements GuestMemory {
  readonly #direct: GuestMemory;
  readonly #channel: () => MemAccessChannel | undefined;
  readonly #chunk: number;

  /**
   * @param direct - the memory table (borrowed).
   * @param channel - the MEM_READ/MEM_WRITE channel, or a function returning it once it exists
   *   (`undefined` while there is none: remote parts then fail with `UNMAPPED`).
   * @param options - chunk size.
   * @throws RangeError when `chunk` is not in 1..65536.
   */
  constructor(direct: GuestMemory, channel: MemAccessChannel | (() => MemAccessChannel | undefined), options: FallbackMemoryOptions = {}) {
    this.#direct = direct;
    this.#channel = typeof channel === "function" ? channel : () => channel;
    const chunk = options.chunk ?? MEM_RW_MAX_DATA;
    if (!Number.isInteger(chunk) || chunk < 1 || chunk > MEM_RW_MAX_DATA) throw new RangeError(`fallback chunk ${chunk} not in 1..${MEM_RW_MAX_DATA}`);
    this.#chunk = chunk;
  }

  /** The direct table's translation; a miss is returned as is (no remote access here). */
  translate(addr: GuestAddress, len: number): TranslateResult {
    return this.#direct.translate(addr, len);
  }

  /** The direct table's `translateNumber` (or `translate`) for a safe-integer address; a miss as is. */
  translateNumber(addr: number, len: number): TranslateResult {
    const d = this.#direct;
    return d.translateNumber !== undefined ? d.translateNumber(addr, len) : d.translate(BigInt(addr) as GuestAddress, len);
  }

  /**
   * True when the range translates directly, or when a MEM_READ/MEM_WRITE channel exists for the rest
   * (the front-end decides at access time whether it can serve it).
   */
  reachable(addr: GuestAddress, len: number): boolean {
    if (len <= 0 || addr + BigInt(len) > U64_END) return false;
    if (this.#channel() !== undefined) return true;
    try {
      translateRange(this.#direct, addr, len, false);
      return true;
    } catch {
      return false;
    }
  }

  /** Ring addresses translate through the direct table only (rings never live in shared memory regions). */
  translateUser(addr: UserAddress, len: number): TranslateResult {
    return this.#direct.translateUser?.(addr, len) ?? { ok: false, miss: { kind: "unmapped", addr } };
  }

  /**
   * Fill `dst` from guest-physical `addr`: direct spans are copied, the rest comes by MEM_READ in
   * pieces of at most `chunk` bytes, each copied once, from the socket straight into `dst`.
   * @throws FallbackError `OUT_OF_BOUNDS` (wrap), `UNMAPPED` (no channel), `REMOTE_FAILED`.
   */
  async read(addr: GuestAddress, dst: Uint8Array): Promise<void> {
    for (const p of this.#plan(addr, dst.length, false)) {
      const part = dst.subarray(p.at, p.at + p.len);
      if (p.bytes) part.set(p.bytes);
      else {
        const ch = this.#require(p.addr, p.len);
        for (let off = 0; off < p.len; off += this.#chunk) {
          const n = Math.min(this.#chunk, p.len - off);
          await this.#remote(p.addr + BigInt(off), n, () => ch.memReadInto(p.addr + BigInt(off), part.subarray(off, off + n)));
        }
      }
    }
  }

  /**
   * Write `src` to guest-physical `addr`. Every direct part is checked (mapped, writable) before any
   * byte is written; remote parts go by MEM_WRITE in pieces of at most `chunk` bytes.
   * @throws FallbackError `OUT_OF_BOUNDS`, `READ_ONLY`, `UNMAPPED`, `REMOTE_FAILED`.
   */
  async write(addr: GuestAddress, src: Uint8Array): Promise<void> {
    const plan = this.#plan(addr, src.length, true);
    const ch = plan.some((p) => p.bytes === undefined) ? this.#require(addr, src.length) : undefined;
    for (const p of plan) {
      const part = src.subarray(p.at, p.at + p.len);
      if (p.bytes) p.bytes.set(part);
      else if (ch) {
        for (let off = 0; off < p.len; off += this.#chunk) {
          const n = Math.min(this.#chunk, p.len - off);
          await this.#remote(p.addr + BigInt(off), n, () => ch.memWrite(p.addr + BigInt(off), part.subarray(off, off + n)));
        }
      }
    }
  }

  /**
   * Split `[addr, addr + len)` into direct spans (`bytes` set) and remote runs. A remote run ends
   * where the table translates again, probing page by page from the miss.
   */
  #plan(addr: GuestAddress, len: number, write: boolean): { at: number; addr: bigint; len: number; bytes?: Uint8Array }[] {
    if (len === 0) return [];
    if (addr + BigInt(len) > U64_END)
      throw new FallbackError("OUT_OF_BOUNDS", `access at 0x${addr.toString(16)} + 0x${len.toString(16)} wraps`, { offset: addr, actual: len });
    const parts: { at: number; addr: bigint; len: number; bytes?: Uint8Array }[] = [];
    let at = 0;
    while (at < len) {
      const a = addr + BigInt(at);
      const r = this.#direct.translate(a as GuestAddress, len - at);
      if (r.ok && r.span.bytes.length > 0) {
        if (write && !r.span.writable) throw new FallbackError("READ_ONLY", `write at 0x${a.toString(16)} touches read-only memory`, { offset: a });
        const n = Math.min(r.span.bytes.length, len - at);
        parts.push({ at, addr: a, len: n, bytes: r.span.bytes.subarray(0, n) });
        at += n;
        continue;
      }
      // Remote until the next range that translates (or the end): in one step when the table says
      // where that range starts, else probing page by page.
      let n: number;
      const next = r.ok ? undefined : r.miss.kind === "unmapped" ? r.miss.next : undefined;
      if (next !== undefined && next > a) n = next - a >= BigInt(len - at) ? len - at : Number(next - a);
      else {
        n = Math.min(len - at, 4096 - Number(a % 4096n));
        while (at + n < len) {
          const probe = this.#direct.translate((a + BigInt(n)) as GuestAddress, 1);
          if (probe.ok) break;
          n = Math.min(len - at, n + 4096);
        }
      }
      const last = parts.at(-1);
      if (last && last.bytes === undefined && last.at + last.len === at) last.len += n;
      else parts.push({ at, addr: a, len: n });
      at += n;
    }
    return parts;
  }

  #require(addr: bigint, len: number): MemAccessChannel {
    const ch = this.#channel();
    if (ch === undefined) {
      throw new FallbackError(
        "UNMAPPED",
        `0x${addr.toString(16)} + 0x${len.toString(16)} is outside the memory table and MEM_READ/MEM_WRITE is not available`,
        { offset: addr, actual: len },
      );
    }
    return ch;
  }

  async #remote<T>(addr: bigint, len: number, call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (err) {
      throw new FallbackError(
        "REMOTE_FAILED",
        `front-end could not serve 0x${len.toString(16)} bytes at 0x${addr.toString(16)}: ${err instanceof Error ? err.message : String(err)}`,
        { offset: addr, actual: len },
        { cause: err },
      );
    }
  }
}
