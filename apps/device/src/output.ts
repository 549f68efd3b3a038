/**
 * Output helpers: aligned text tables, hex, JSON with bigints.
 */

/** Formats rows as left-aligned columns separated by two spaces. */
export function table(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return rows
    .map((r) =>
      r
        .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

/** `0x`-prefixed lowercase hex of a u64/number. */
export function hex(v: bigint | number): string {
  return `0x${v.toString(16)}`;
}

/** Bytes as one contiguous lowercase hex string. */
export function bytesHex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");
}

/** Hex dump: 16 bytes per line with the offset. */
export function hexDump(b: Uint8Array, indent = "  "): string {
  const lines: string[] = [];
  for (let o = 0; o < b.byteLength; o += 16) {
    const row = [...b.subarray(o, o + 16)].map((x) => x.toString(16).padStart(2, "0")).join(" ");
    lines.push(`${indent}${o.toString(16).padStart(4, "0")}  ${row}`);
  }
  return lines.join("\n");
}

/** JSON.stringify that writes bigints as hex strings. */
export function json(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) => (typeof x === "bigint" ? hex(x) : x instanceof Uint8Array ? bytesHex(x) : x), 2);
}
