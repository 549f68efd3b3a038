/**
 * The EDID that GET_EDID returns: one 128-byte EDID 1.4 base block (VESA E-EDID) describing a
 * digital display whose only mode, the preferred detailed timing, is the scanout's size at 60 Hz
 * with reduced blanking. Pure bytes.
 * @module
 */

/** Size of an EDID base block. */
export const EDID_BLOCK_SIZE = 128;

/** Size of `virtio_gpu_resp_edid`: header, u32 size, u32 padding, 1024 bytes of EDID. */
export const EDID_RESPONSE_SIZE = 24 + 8 + 1024;

/** Largest width or height a detailed timing descriptor can hold (12 bits). */
export const EDID_MAX_DIMENSION = 4095;

/** Refresh rate of the mode, Hz. */
export const EDID_REFRESH_HZ = 60;

/** The three-letter manufacturer id of the sample ("VHK"). */
export const EDID_MANUFACTURER = "VHK";

/** Monitor name in the display descriptor (at most 13 characters). */
export const EDID_MONITOR_NAME = "vhostkit-gpu";

/** Horizontal blanking of the timing, pixels: front porch, sync, back porch (CVT reduced blanking). */
const H_FRONT = 48;
const H_SYNC = 32;
const H_BACK = 80;
/** Vertical front porch and sync, lines; the back porch fills the blanking up to 460 µs. */
const V_FRONT = 3;
const V_SYNC = 4;
const MIN_V_BLANK_US = 460;

/** Timing of the one mode: totals and the pixel clock in units of 10 kHz. */
export interface EdidTiming {
  readonly hTotal: number;
  readonly vTotal: number;
  /** Pixel clock / 10 kHz (a u16 in the descriptor). */
  readonly clock10kHz: number;
}

/** The reduced-blanking timing of `width` × `height` at {@link EDID_REFRESH_HZ}, or `undefined` when a detailed timing cannot hold it. */
export function edidTiming(width: number, height: number): EdidTiming | undefined {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1 || width > EDID_MAX_DIMENSION || height > EDID_MAX_DIMENSION)
    return undefined;
  const hTotal = width + H_FRONT + H_SYNC + H_BACK;
  // Line period estimated from the active lines, then as many blank lines as 460 µs need.
  const linePeriodUs = (1e6 / EDID_REFRESH_HZ - MIN_V_BLANK_US) / height;
  const vBlank = Math.max(V_FRONT + V_SYNC + 1, Math.ceil(MIN_V_BLANK_US / linePeriodUs));
  const vTotal = height + vBlank;
  const clock10kHz = Math.max(1, Math.round((hTotal * vTotal * EDID_REFRESH_HZ) / 10_000));
  if (clock10kHz > 0xffff || vBlank > 0xfff) return undefined;
  return { hTotal, vTotal, clock10kHz };
}

/** Millimetres of `px` pixels at 96 dots per inch. */
function mm(px: number): number {
  return Math.round((px * 25.4) / 96);
}

/**
 * The EDID base block of a `width` × `height` display, or `undefined` when the size does not fit
 * a detailed timing descriptor ({@link EDID_MAX_DIMENSION}, a pixel clock up to 655.35 MHz).
 */
export function makeEdid(width: number, height: number): Uint8Array | undefined {
  const t = edidTiming(width, height);
  if (t === undefined) return undefined;
  const e = new Uint8Array(EDID_BLOCK_SIZE);
  e.set([0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00], 0);
  const letter = (i: number) => EDID_MANUFACTURER.charCodeAt(i) - 64; // 'A' = 1
  const mfg = (letter(0) << 10) | (letter(1) << 5) | letter(2);
  e[8] = mfg >> 8; // big-endian
  e[9] = mfg & 0xff;
  e[10] = 0x01; // product code 1 (little-endian)
  e[16] = 1; // week 1
  e[17] = 2026 - 1990; // year of manufacture
  e[18] = 1; // EDID 1.4
  e[19] = 4;
  e[20] = 0xa0; // digital input, 8 bits per colour, interface not defined
  const wMm = mm(width);
  const hMm = mm(height);
  e[21] = Math.max(1, Math.min(255, Math.round(wMm / 10))); // screen size, cm
  e[22] = Math.max(1, Math.min(255, Math.round(hMm / 10)));
  e[23] = 120; // gamma 2.2
  e[24] = 0x06; // sRGB default colour space, preferred timing is native
  // Chromaticity: sRGB primaries and white point, 10 bits each (2 low bits packed in bytes 25-26).
  const c = [0.64, 0.33, 0.3, 0.6, 0.15, 0.06, 0.3127, 0.329].map((v) => Math.round(v * 1024));
  const lo = (i: number) => (c[i] as number) & 3;
  e[25] = (lo(0) << 6) | (lo(1) << 4) | (lo(2) << 2) | lo(3);
  e[26] = (lo(4) << 6) | (lo(5) << 4) | (lo(6) << 2) | lo(7);
  for (let i = 0; i < 8; i++) e[27 + i] = (c[i] as number) >> 2;
  // 35-37: no established timings. 38-53: standard timings unused (0x01 0x01).
  e.fill(0x01, 38, 54);
  // Descriptor 1 (54): the detailed timing of the preferred mode.
  const d = 54;
  const hBlank = t.hTotal - width;
  const vBlank = t.vTotal - height; // the back porch is what remains after front porch and sync
  e[d] = t.clock10kHz & 0xff;
  e[d + 1] = t.clock10kHz >> 8;
  e[d + 2] = width & 0xff;
  e[d + 3] = hBlank & 0xff;
  e[d + 4] = ((width >> 8) << 4) | (hBlank >> 8);
  e[d + 5] = height & 0xff;
  e[d + 6] = vBlank & 0xff;
  e[d + 7] = ((height >> 8) << 4) | (vBlank >> 8);
  e[d + 8] = H_FRONT & 0xff;
  e[d + 9] = H_SYNC & 0xff;
  e[d + 10] = ((V_FRONT & 0xf) << 4) | (V_SYNC & 0xf);
  e[d + 11] = ((H_FRONT >> 8) << 6) | ((H_SYNC >> 8) << 4) | ((V_FRONT >> 4) << 2) | (V_SYNC >> 4);
  e[d + 12] = wMm & 0xff;
  e[d + 13] = hMm & 0xff;
  e[d + 14] = ((wMm >> 8) << 4) | (hMm >> 8);
  e[d + 17] = 0x1a; // digital separate sync, +hsync, -vsync (reduced blanking)
  // Descriptor 2 (72): monitor name, newline-terminated and space-padded to 13 bytes.
  e.set([0, 0, 0, 0xfc, 0], 72);
  const name = `${EDID_MONITOR_NAME}\n`.padEnd(13, " ");
  for (let i = 0; i < 13; i++) e[77 + i] = name.charCodeAt(i);
  // Descriptors 3 (90) and 4 (108): dummy descriptors (tag 0x10).
  e[93] = 0x10;
  e[111] = 0x10;
  e[126] = 0; // no extension blocks
  e[127] = (256 - (e.subarray(0, 127).reduce((s, b) => s + b, 0) % 256)) % 256;
  return e;
}
