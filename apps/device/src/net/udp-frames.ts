/**
 * The test frames of `vhost-user-device net`: Ethernet / IPv4 / UDP with valid IP and UDP
 * checksums, a payload that starts with a magic and a 64-bit sequence number and continues with a
 * fixed pattern, so that a received frame can be checked byte for byte (MAC addresses aside: a
 * reflecting port swaps them).
 */

/** Offsets inside a frame. */
const ETH = 14;
const IP = ETH;
const UDP = IP + 20;
const PAYLOAD = UDP + 8;
/** Magic (4 bytes) and sequence number (u64 little-endian) at the start of the payload. */
const MAGIC = 0x4e4b4856; // "VHKN" read little-endian
const SEQ = PAYLOAD + 4;
const PATTERN = SEQ + 8;

/** Smallest and largest frame (without FCS) the generator builds. */
export const MIN_FRAME = 60;
/** Largest frame: a standard 1500-byte MTU plus the Ethernet header. */
export const MAX_FRAME = 1514;

/** Why a received frame is not one of ours or not intact. */
export type FrameCheck = "ok" | "foreign" | "corrupt";

function sum16(bytes: Uint8Array, from: number, to: number, acc = 0): number {
  let s = acc;
  let i = from;
  for (; i + 1 < to; i += 2) s += (bytes[i]! << 8) | bytes[i + 1]!;
  if (i < to) s += bytes[i]! << 8;
  return s;
}

function fold(s: number): number {
  let x = s;
  while (x > 0xffff) x = (x & 0xffff) + Math.floor(x / 0x10000);
  return x;
}

/**
 * Builds frames of one size: a template with everything but the sequence number, and per frame the
 * sequence number and the UDP checksum updated incrementally.
 */
export class UdpFrames {
  /** Frame length in bytes (without FCS). */
  readonly size: number;
  readonly #template: Uint8Array;
  /** One's-complement sum of the UDP pseudo header, header and payload with sequence number 0 and checksum 0. */
  readonly #baseSum: number;
  readonly #frame: Uint8Array;
  readonly #view: DataView;
  /** {@link UdpFrames.lastSeq}. */
  #seq = -1;
  /** Buffers {@link UdpFrames.writeTo} wrote a whole frame into, and at which offset. */
  readonly #written = new WeakMap<Uint8Array, number>();

  constructor(size: number, src: Uint8Array, dst: Uint8Array) {
    if (!Number.isInteger(size) || size < MIN_FRAME || size > MAX_FRAME) throw new RangeError(`frame size ${size} (${MIN_FRAME} to ${MAX_FRAME})`);
    this.size = size;
    const t = new Uint8Array(size);
    const dv = new DataView(t.buffer);
    t.set(dst, 0);
    t.set(src, 6);
    dv.setUint16(12, 0x0800);
    // IPv4: version 4, IHL 5, total length, TTL 64, UDP, 10.0.0.1 -> 10.0.0.2, then the header checksum.
    dv.setUint8(IP, 0x45);
    dv.setUint16(IP + 2, size - ETH);
    dv.setUint16(IP + 6, 0x4000); // don't fragment
    dv.setUint8(IP + 8, 64);
    dv.setUint8(IP + 9, 17);
    dv.setUint32(IP + 12, 0x0a000001);
    dv.setUint32(IP + 16, 0x0a000002);
    dv.setUint16(IP + 10, ~fold(sum16(t, IP, IP + 20)) & 0xffff);
    // UDP 9 -> 9 (discard), length.
    dv.setUint16(UDP, 9);
    dv.setUint16(UDP + 2, 9);
    dv.setUint16(UDP + 4, size - UDP);
    dv.setUint32(PAYLOAD, MAGIC, true);
    for (let i = PATTERN; i < size; i++) t[i] = (i * 7 + 0x5a) & 0xff;
    this.#template = t;
    // Pseudo header: addresses, protocol, UDP length.
    this.#baseSum = sum16(t, IP + 12, IP + 20, 17 + (size - UDP)) + sum16(t, UDP, size);
    this.#frame = t.slice();
    this.#view = new DataView(this.#frame.buffer);
  }

  /** The UDP checksum of the frame with sequence number `seq`. */
  #checksum(seq: number): number {
    const lo = seq % 0x1_0000_0000;
    const hi = Math.floor(seq / 0x1_0000_0000);
    // The sequence number is little-endian; the checksum sums big-endian 16-bit words.
    const sw = (x: number) => (((x & 0xff) << 8) | ((x >> 8) & 0xff)) + ((((x >>> 16) & 0xff) << 8) | (x >>> 24));
    const c = ~fold(this.#baseSum + sw(lo) + sw(hi)) & 0xffff;
    return c === 0 ? 0xffff : c;
  }

  /**
   * Writes the frame with sequence number `seq` into `buf` from `off`; returns its length. A buffer
   * this generator wrote before at the same offset (the same object: a driver's standing transmit
   * buffer) gets only the sequence number and the UDP checksum, the rest being there already.
   */
  writeTo(buf: Uint8Array, off: number, seq: number): number {
    if (this.#written.get(buf) !== off) {
      buf.set(this.#template, off);
      this.#written.set(buf, off);
    }
    const lo = seq % 0x1_0000_0000;
    const hi = Math.floor(seq / 0x1_0000_0000);
    for (let b = 0; b < 4; b++) {
      buf[off + SEQ + b] = (lo >>> (8 * b)) & 0xff;
      buf[off + SEQ + 4 + b] = (hi >>> (8 * b)) & 0xff;
    }
    const c = this.#checksum(seq);
    buf[off + UDP + 6] = c >> 8;
    buf[off + UDP + 7] = c & 0xff;
    return this.size;
  }

  /** The frame with sequence number `seq` (a scratch buffer, overwritten by the next call). */
  frame(seq: number): Uint8Array {
    this.#view.setUint32(SEQ, seq % 0x1_0000_0000, true);
    this.#view.setUint32(SEQ + 4, Math.floor(seq / 0x1_0000_0000), true);
    this.#view.setUint16(UDP + 6, this.#checksum(seq));
    return this.#frame;
  }

  /**
   * Checks a received frame: `foreign` when it is not one of ours (other size, not IPv4/UDP to
   * port 9, no magic), `corrupt` when it is ours but a byte after the MAC addresses differs from
   * what was sent (checksums included); else `ok` with its sequence number.
   */
  check(frame: Uint8Array): { readonly result: FrameCheck; readonly seq: number } {
    const result = this.classify(frame, 0, frame.byteLength);
    return { result, seq: result === "foreign" ? -1 : this.#seq };
  }

  /**
   * {@link UdpFrames.check} of the `len` bytes at `off` in `buf`, read in place (no view or object
   * made per frame); the sequence number of the last frame classified ours is {@link UdpFrames.lastSeq}.
   */
  classify(buf: Uint8Array, off: number, len: number): FrameCheck {
    const t = this.#template;
    if (len !== this.size || buf[off + 12] !== 0x08 || buf[off + 13] !== 0x00 || buf[off + IP + 9] !== 17) return "foreign";
    if (u32le(buf, off + PAYLOAD) !== MAGIC) return "foreign";
    const seq = u32le(buf, off + SEQ) + u32le(buf, off + SEQ + 4) * 0x1_0000_0000;
    this.#seq = seq;
    if (((buf[off + UDP + 6] as number) << 8) + (buf[off + UDP + 7] as number) !== this.#checksum(seq)) return "corrupt";
    for (let i = 12; i < SEQ; i++) if (i !== UDP + 6 && i !== UDP + 7 && buf[off + i] !== t[i]) return "corrupt";
    for (let i = PATTERN; i < len; i++) if (buf[off + i] !== t[i]) return "corrupt";
    return "ok";
  }

  /** The sequence number of the last frame {@link UdpFrames.classify} found ours. */
  get lastSeq(): number {
    return this.#seq;
  }
}

/** Little-endian u32 at `at` (>>> 0: unsigned). */
function u32le(b: Uint8Array, at: number): number {
  return ((b[at] as number) | ((b[at + 1] as number) << 8) | ((b[at + 2] as number) << 16) | ((b[at + 3] as number) << 24)) >>> 0;
}

/** Swaps the destination and source MAC addresses of `frame` in place (what a reflector does). */
export function swapMacs(frame: Uint8Array): void {
  for (let i = 0; i < 6; i++) {
    const d = frame[i]!;
    frame[i] = frame[i + 6]!;
    frame[i + 6] = d;
  }
}

/** `aa:bb:cc:dd:ee:ff`. */
export function macText(mac: Uint8Array): string {
  return Array.from(mac, (b) => b.toString(16).padStart(2, "0")).join(":");
}
