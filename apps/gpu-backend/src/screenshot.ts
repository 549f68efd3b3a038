/**
 * PNG screenshots of flushed scanouts (fast-png), written to a directory.
 * @module
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { encode } from "fast-png";
import type { Frame } from "./resources.js";

/** Encodes a frame as an 8-bit RGBA PNG. */
export function framePng(frame: Frame): Uint8Array {
  return encode({ width: frame.width, height: frame.height, data: frame.rgba, channels: 4, depth: 8 });
}

/**
 * A frame sink writing `scanout<N>-<seq>.png` (seq 4 digits, from 1) and `scanout<N>.png` (the
 * latest) into `dir` (created if missing). `onWrite` gets the numbered file's path.
 */
export function screenshotWriter(dir: string, onWrite?: (file: string, frame: Frame) => void): (frame: Frame) => void {
  mkdirSync(dir, { recursive: true });
  let seq = 0;
  return (frame) => {
    const png = framePng(frame);
    const file = join(dir, `scanout${frame.scanoutId}-${String(++seq).padStart(4, "0")}.png`);
    writeFileSync(file, png);
    writeFileSync(join(dir, `scanout${frame.scanoutId}.png`), png);
    onWrite?.(file, frame);
  };
}
