/**
 * Source files that have grown past a size one can hold in one's head.
 * @module
 */
import { join, sep } from "node:path";
import { isModuleFile, readText, relPath } from "../files.js";
import { warning, type Finding, type LintContext } from "../finding.js";

/** Lines above which a source file gets a warning. */
export const MAX_SOURCE_LINES = 500;

/**
 * A warning (not an error) for each non-test source file under a workspace's `src/` with more than
 * {@link MAX_SOURCE_LINES} lines: a sign that it mixes concerns and wants splitting.
 */
export function fileSize(ctx: LintContext): Finding[] {
  const out: Finding[] = [];
  const srcDirs = ctx.workspaces.map((w) => join(w.dir, "src") + sep);
  for (const file of ctx.files) {
    if (!isModuleFile(file) || file.endsWith(".test.ts") || !srcDirs.some((d) => file.startsWith(d))) continue;
    const text = readText(file);
    if (text === undefined) continue;
    const lines = text.split("\n").length - (text.endsWith("\n") ? 1 : 0);
    if (lines > MAX_SOURCE_LINES)
      out.push(warning(relPath(ctx.root, file), `${lines} lines (more than ${MAX_SOURCE_LINES}): consider splitting it by concern`));
  }
  return out;
}
