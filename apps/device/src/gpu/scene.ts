/**
 * The demo scene drawn by the driver: a sky gradient, a sun, hills and three bars (B, G, R, X bytes
 * per pixel, i.e. B8G8R8X8_UNORM). Deterministic, so tests can check pixels.
 */

/** An RGB colour. */
export type Rgb = readonly [number, number, number];

/** Colours of the scene's parts. */
export const SCENE = {
  sun: [255, 204, 0] as Rgb,
  hill: [46, 139, 87] as Rgb,
  bars: [[230, 57, 70] as Rgb, [69, 123, 157] as Rgb, [241, 250, 238] as Rgb],
} as const;

/** Sky colour of row `y` of `height`. */
export function sky(y: number, height: number): Rgb {
  const t = y / Math.max(1, height - 1);
  return [Math.round(40 + 100 * t), Math.round(90 + 110 * t), Math.round(200 + 50 * t)];
}

/** The colour at (x, y). */
export function sceneColour(x: number, y: number, width: number, height: number): Rgb {
  const r = Math.min(width, height);
  const [sx, sy, sr] = [width * 0.75, height * 0.28, r * 0.12];
  if ((x - sx) ** 2 + (y - sy) ** 2 <= sr * sr) return SCENE.sun;
  const barH = Math.max(2, Math.round(height * 0.06));
  const barTop = Math.round(height * 0.86);
  if (y >= barTop && y < barTop + barH) {
    const third = Math.floor((x * 3) / width);
    return SCENE.bars[Math.min(2, third)] as Rgb;
  }
  const hill = height * 0.62 + Math.sin((x / width) * Math.PI * 2) * height * 0.06;
  if (y >= hill) return SCENE.hill;
  return sky(y, height);
}

/** The scene as B8G8R8X8 pixels, `stride` bytes per row (>= width × 4). */
export function drawScene(width: number, height: number, stride = width * 4): Uint8Array {
  const out = new Uint8Array(stride * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const [r, g, b] = sceneColour(x, y, width, height);
      out.set([b, g, r, 0xff], y * stride + x * 4);
    }
  }
  return out;
}

/** B8G8R8X8 rows (`stride` bytes each) → RGBA. */
export function bgrxToRgba(src: Uint8Array, width: number, height: number, stride = width * 4): Uint8Array {
  const out = new Uint8Array(width * height * 4);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const p = y * stride + x * 4;
      out.set([src[p + 2] as number, src[p + 1] as number, src[p] as number, 255], (y * width + x) * 4);
    }
  }
  return out;
}
