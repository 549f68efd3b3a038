/**
 * What a device sees of a device state transfer (docs/protocol.md#device-state-transfer): a
 * {@link StateWriter} to stream its state into when saving, a {@link StateReader} to take it back
 * from when loading. Both sit on the pipe the front-end handed over with SET_DEVICE_STATE_FD, and
 * every wait goes through the reactor: a device never blocks the event loop.
 * @module
 */
import type { PipeEnd } from "@vhostkit/transport";
import { isTransportError } from "@vhostkit/transport";
import { BackendError } from "./errors.js";

/** Where a device writes its state on save; the framework closes the pipe (EOF) after `saveState` returns. */
export interface StateWriter {
  /**
   * Appends `bytes` to the state stream, waiting while the pipe is full (the front-end reads it
   * concurrently). `bytes` may be reused once the promise settles.
   * @throws BackendError `STATE_IO` when the front-end closed its end or the pipe failed.
   */
  write(bytes: Uint8Array): Promise<void>;
  /** Bytes written so far. */
  readonly written: number;
}

/**
 * Where a device reads its state on load. The stream ends where the front-end closed its end of the
 * pipe; after `loadState` returns, the framework checks that nothing is left (trailing bytes are
 * `STATE_INVALID`).
 */
export interface StateReader {
  /**
   * Exactly `len` bytes (a fresh copy), waiting for them as long as the front-end sends.
   * @throws BackendError `STATE_TRUNCATED` when the stream ends first, `STATE_INVALID` past the
   *   size limit, `STATE_IO` when the pipe fails.
   */
  readExactly(len: number): Promise<Uint8Array>;
  /**
   * Everything up to the end of the stream (a fresh copy; empty when nothing is left).
   * @throws BackendError `STATE_INVALID` past the size limit, `STATE_IO` when the pipe fails.
   */
  readToEnd(): Promise<Uint8Array>;
  /** True once the stream ended and every byte was read. */
  atEnd(): Promise<boolean>;
  /** Bytes read so far. */
  readonly consumed: number;
}

/** A pipe failure as the device sees it: `STATE_IO`, the transport error as the cause. */
function ioError(request: string, err: unknown): unknown {
  if (!isTransportError(err)) return err;
  return new BackendError("STATE_IO", `${request.toLowerCase()}: state pipe: ${err.message}`, { request }, { cause: err });
}

/** @internal the {@link StateWriter} over a pipe's write end (borrowed). */
export class PipeStateWriter implements StateWriter {
  readonly #pipe: PipeEnd;
  #written = 0;

  constructor(pipe: PipeEnd) {
    this.#pipe = pipe;
  }

  get written(): number {
    return this.#written;
  }

  async write(bytes: Uint8Array): Promise<void> {
    try {
      await this.#pipe.write(bytes);
    } catch (err) {
      throw ioError("SET_DEVICE_STATE_FD", err);
    }
    this.#written += bytes.byteLength;
  }
}

/** @internal the {@link StateReader} over a pipe's read end (borrowed), at most `limit` bytes in all. */
export class PipeStateReader implements StateReader {
  readonly #pipe: PipeEnd;
  readonly #limit: number;
  /** Received, not yet consumed, in arrival order (the first one possibly partly consumed). */
  readonly #chunks: Uint8Array[] = [];
  #pendingLen = 0;
  #received = 0;
  #consumed = 0;
  #eof = false;

  constructor(pipe: PipeEnd, limit: number) {
    this.#pipe = pipe;
    this.#limit = limit;
  }

  get consumed(): number {
    return this.#consumed;
  }

  /** Reads one more chunk; false at EOF. */
  async #fill(): Promise<boolean> {
    if (this.#eof) return false;
    let chunk: Uint8Array;
    try {
      chunk = await this.#pipe.read();
    } catch (err) {
      throw ioError("SET_DEVICE_STATE_FD", err);
    }
    if (chunk.byteLength === 0) {
      this.#eof = true;
      return false;
    }
    this.#received += chunk.byteLength;
    if (this.#received > this.#limit) {
      throw new BackendError("STATE_INVALID", `set_device_state_fd: state stream longer than the limit of 0x${this.#limit.toString(16)} bytes`, {
        request: "SET_DEVICE_STATE_FD",
        expected: this.#limit,
      });
    }
    this.#chunks.push(chunk);
    this.#pendingLen += chunk.byteLength;
    return true;
  }

  /** The next `len` pending bytes (`len` <= pending), as one fresh array. */
  #take(len: number): Uint8Array {
    const out = new Uint8Array(len);
    let at = 0;
    while (at < len) {
      const head = this.#chunks[0] as Uint8Array;
      const n = Math.min(head.byteLength, len - at);
      out.set(head.subarray(0, n), at);
      at += n;
      if (n === head.byteLength) this.#chunks.shift();
      else this.#chunks[0] = head.subarray(n);
    }
    this.#pendingLen -= len;
    this.#consumed += len;
    return out;
  }

  async readExactly(len: number): Promise<Uint8Array> {
    if (!Number.isSafeInteger(len) || len < 0) throw new RangeError(`readExactly: length ${len} is not a non-negative integer`);
    if (len > this.#limit) {
      throw new BackendError("STATE_INVALID", `set_device_state_fd: the device asked for 0x${len.toString(16)} bytes, over the limit`, {
        request: "SET_DEVICE_STATE_FD",
        expected: this.#limit,
        actual: len,
      });
    }
    while (this.#pendingLen < len) {
      if (!(await this.#fill())) {
        throw new BackendError(
          "STATE_TRUNCATED",
          `set_device_state_fd: state ended at byte 0x${(this.#consumed + this.#pendingLen).toString(16)}, 0x${len.toString(16)} more bytes expected from 0x${this.#consumed.toString(16)}`,
          { request: "SET_DEVICE_STATE_FD", expected: len, actual: this.#pendingLen, offset: this.#consumed },
        );
      }
    }
    return this.#take(len);
  }

  async readToEnd(): Promise<Uint8Array> {
    while (await this.#fill()) {
      // each chunk joins #chunks
    }
    return this.#take(this.#pendingLen);
  }

  async atEnd(): Promise<boolean> {
    if (this.#pendingLen > 0) return false;
    return !(await this.#fill());
  }
}
