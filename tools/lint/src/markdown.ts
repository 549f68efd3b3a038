/**
 * Markdown headings and their anchors, as GitHub renders them.
 * @module
 */

/**
 * The anchor GitHub gives a heading with text `text`, before de-duplication: lowercase, every
 * character that is not a letter, mark, digit, connector (`_`), hyphen or space removed, each space
 * turned into a hyphen. Inline code backticks and link syntax are dropped first (`[t](u)` → `t`).
 */
export function githubSlug(text: string): string {
  return text
    .replace(/\[([^\]]*)\]\([^)]*\)/g, "$1")
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}\p{Pc}\- ]/gu, "")
    .replace(/ /g, "-");
}

/**
 * The anchors of every ATX heading (`#` to `######`) of a markdown document, outside fenced code
 * blocks and front matter, de-duplicated the way GitHub does (`x`, `x-1`, `x-2`, …).
 */
export function headingAnchors(markdown: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  let fence: string | undefined;
  const lines = markdown.split("\n");
  let i = 0;
  if (lines[0]?.trim() === "---") {
    const end = lines.findIndex((l, n) => n > 0 && l.trim() === "---");
    if (end > 0) i = end + 1;
  }
  for (; i < lines.length; i++) {
    const line = lines[i] as string;
    const f = /^\s{0,3}(`{3,}|~{3,})/.exec(line);
    if (f) {
      const marker = (f[1] as string)[0] as string;
      if (fence === undefined) fence = marker;
      else if (fence === marker) fence = undefined;
      continue;
    }
    if (fence !== undefined) continue;
    const h = /^\s{0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$/.exec(line);
    if (!h) continue;
    const base = githubSlug(h[1] as string);
    const n = seen.get(base);
    let slug = base;
    if (n !== undefined) {
      let k = n;
      do slug = `${base}-${++k}`;
      while (seen.has(slug));
      seen.set(base, k);
    }
    seen.set(slug, seen.get(slug) ?? 0);
    anchors.add(slug);
  }
  return anchors;
}
