/**
 * Documentation references: every `docs/<page>.md#<anchor>` named anywhere in the repository must
 * name a page of `docs/` and a heading of it, and nothing may cite the reference material that
 * lives outside the repository.
 * @module
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve, sep } from "node:path";
import { lineAt, readText, relPath } from "../files.js";
import { error, type Finding, type LintContext } from "../finding.js";
import { headingAnchors } from "../markdown.js";

/**
 * Names of reference files that are not part of the repository (written so that this file does
 * not match itself): the three spec/style files, the performance notes and the `shared/` folder.
 */
const EXTERNAL = /\b(?:PROTOCOL|SHMEM|STYLE)\.md\b|\bPERF-NOTE[S]\b|\.\.\/shared\//g;

/**
 * A path to a docs page with an optional anchor: an optional run of `./` / `../` segments, then
 * `docs/<page>.md`, not preceded by another path segment (so `pkg/docs/x.md` does not count).
 */
const DOCS_PATH = /(?<![\w./-])((?:\.{1,2}\/)*)docs\/([\w.-]+\.md)(?:#([\w-]*))?/g;

/** Markdown inline link targets: `](target)`. */
const MD_LINK = /\]\(([^)\s]+)\)/g;

/**
 * Checks, in every text file in scope:
 * - each `docs/<page>.md[#anchor]` (in comments, strings, prose) names an existing page of the
 *   root `docs/` and, when an anchor is given, a heading whose GitHub anchor equals it; a bare
 *   `docs/…` path is relative to the repository root, one starting with `./` or `../` must resolve
 *   to the root `docs/` from the file's own directory;
 * - in markdown files, each relative link into `docs/` (and, inside `docs/`, each `#anchor` link)
 *   resolves the same way;
 * - outside `docs/`, no file cites the external reference files (the spec, style and performance
 *   notes that were never part of the repository): an error naming what to cite instead.
 */
export function docReferences(ctx: LintContext): Finding[] {
  const out: Finding[] = [];
  const docsDir = join(ctx.root, "docs");
  const anchorsCache = new Map<string, Set<string> | undefined>();
  const anchorsOf = (page: string): Set<string> | undefined => {
    if (!anchorsCache.has(page)) {
      const p = join(docsDir, page);
      anchorsCache.set(page, existsSync(p) ? headingAnchors(readFileSync(p, "utf8")) : undefined);
    }
    return anchorsCache.get(page);
  };
  /** Checks page + anchor; returns an error message or undefined. */
  const check = (page: string, anchor: string | undefined, shown: string): string | undefined => {
    const anchors = anchorsOf(page);
    if (anchors === undefined) return `names ${shown}, but docs/${page} does not exist`;
    if (anchor !== undefined && !anchors.has(anchor)) return `names ${shown}, but docs/${page} has no heading with the anchor #${anchor}`;
    return undefined;
  };

  for (const file of ctx.files) {
    const text = readText(file);
    if (text === undefined) continue;
    const rel = relPath(ctx.root, file);
    const inDocs = file.startsWith(docsDir + sep);
    const isMarkdown = file.endsWith(".md");
    const linkSpans: [number, number][] = [];
    let ownAnchors: Set<string> | undefined;

    if (isMarkdown) {
      for (const m of text.matchAll(MD_LINK)) {
        const target = m[1] as string;
        if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // a URL
        const start = (m.index ?? 0) + 2;
        const [path, anchor] = target.split("#", 2) as [string, string | undefined];
        if (path === "") {
          // A same-page anchor: checked for docs pages, whose headings are the references' targets.
          ownAnchors ??= headingAnchors(text);
          if (inDocs && anchor !== undefined && !ownAnchors.has(anchor)) {
            out.push(error(rel, `links to #${anchor}, but this page has no heading with that anchor`, lineAt(text, start)));
          }
          continue;
        }
        const abs = resolve(dirname(file), path);
        if (!abs.startsWith(docsDir + sep) || !abs.endsWith(".md")) {
          // A link that looks like it means the docs but leads elsewhere from this file.
          if (/(?:^|\/)docs\/[\w.-]+\.md$/.test(path)) {
            linkSpans.push([start, start + target.length]);
            out.push(
              error(
                rel,
                `links to ${target}, which does not lead to the repository's docs/ from ${relPath(ctx.root, dirname(file)) || "."}/`,
                lineAt(text, start),
              ),
            );
          }
          continue;
        }
        linkSpans.push([start, start + target.length]);
        const page = abs.slice(docsDir.length + 1);
        if (page.includes(sep)) continue; // docs has no sub-folders today; nothing to check there
        const msg = check(page, anchor, target);
        if (msg !== undefined) out.push(error(rel, msg, lineAt(text, start)));
      }
    }

    for (const m of text.matchAll(DOCS_PATH)) {
      const at = m.index ?? 0;
      if (linkSpans.some(([s, e]) => at >= s && at < e)) continue; // a markdown link, checked above
      const prefix = m[1] as string;
      const page = m[2] as string;
      const anchor = m[3];
      const line = lineAt(text, at);
      if (prefix !== "" && resolve(dirname(file), `${prefix}docs`) !== docsDir) {
        out.push(error(rel, `${m[0]} does not lead to the repository's docs/ from ${relPath(ctx.root, dirname(file)) || "."}/`, line));
        continue;
      }
      if (anchor === "") {
        out.push(error(rel, `names ${m[0]} with an empty anchor`, line));
        continue;
      }
      const msg = check(page, anchor, m[0]);
      if (msg !== undefined) out.push(error(rel, msg, line));
    }

    if (!inDocs) {
      for (const m of text.matchAll(EXTERNAL)) {
        out.push(error(rel, `cites ${m[0]}, which is not in the repository: cite docs/<page>.md#<heading> instead`, lineAt(text, m.index ?? 0)));
      }
    }
  }
  return out;
}
