/**
 * Host memory of a blob resource: a memfd, mapped once into this process, that the front-end maps
 * into the driver's shared memory region with SHMEM_MAP (the same pages on both sides).
 * @module
 */
import { closeFd, MAP, mmapOrErrno, munmap, nativeView, pageSize, pointerAt, PROT, sealedMemfd } from "@vhostkit/transport/sys";

/** A memfd-backed host blob. Owns its fd and its mapping; {@link HostBlob.dispose} releases both. */
export class HostBlob {
  /** The memfd (owned; borrowed by SHMEM_MAP, which passes a copy through SCM_RIGHTS). */
  readonly fd: number;
  /** Size in bytes, a page multiple (the driver's size rounded up). */
  readonly size: bigint;
  readonly #addr: bigint;
  #bytes: Uint8Array | undefined;

  private constructor(fd: number, size: bigint, addr: bigint) {
    this.fd = fd;
    this.size = size;
    this.#addr = addr;
    this.#bytes = new Uint8Array(nativeView(pointerAt(addr), Number(size)));
  }

  /** `len` rounded up to the page size. */
  static roundUp(len: bigint): bigint {
    const page = BigInt(pageSize());
    return (len + page - 1n) & ~(page - 1n);
  }

  /**
   * Creates a zeroed blob of at least `len` bytes (rounded up to pages).
   * @returns the blob, or `undefined` when the host cannot provide the memory (memfd, ftruncate or mmap failed).
   */
  static tryCreate(name: string, len: bigint): HostBlob | undefined {
    const size = HostBlob.roundUp(len);
    if (size <= 0n || size > BigInt(Number.MAX_SAFE_INTEGER)) return undefined;
    // Sealed against shrinking and growing: the front-end gets this fd and must not be able to
    // truncate it under our mapping (SIGBUS here), nor we under its (front-ends refuse unsealed ones).
    const fd = sealedMemfd(`vhostkit-gpu-${name}`, size);
    if (fd < 0) return undefined;
    // SAFETY: the fd is ours; a MAP_SHARED mapping of exactly `size` bytes of a file sealed at that
    // size stays valid until dispose() unmaps it, and the view is dropped before that.
    const m = mmapOrErrno(0n, Number(size), PROT.READ | PROT.WRITE, MAP.SHARED, fd, 0n);
    if (!m.ok) {
      closeFd(fd);
      return undefined;
    }
    return new HostBlob(fd, size, m.addr);
  }

  /** The back-end's view of the blob's bytes (the same pages the driver sees once mapped). @throws Error after dispose. */
  get bytes(): Uint8Array {
    if (this.#bytes === undefined) throw new Error("host blob disposed");
    return this.#bytes;
  }

  /** Unmaps and closes. Idempotent; {@link HostBlob.bytes} must not be used afterwards. */
  dispose(): void {
    if (this.#bytes === undefined) return;
    this.#bytes = undefined;
    munmap(this.#addr, Number(this.size));
    closeFd(this.fd);
  }
}
