/**
 * What library sources may not do: load koffi outside `src/sys/`, exit the process, print.
 * @module
 */
import { join, sep } from "node:path";
import { isModuleFile, readText, relPath } from "../files.js";
import { error, type Finding, type LintContext } from "../finding.js";

/**
 * In the libraries' sources (`packages/<name>/src`): koffi is imported only under `src/sys/`;
 * `process.exit` never appears (except in `testing/` helpers) and `console.*` never does, outside
 * test files. Libraries throw typed errors and let apps decide.
 */
export function libraryCode(ctx: LintContext): Finding[] {
  const out: Finding[] = [];
  const libs = ctx.workspaces.filter((w) => w.kind === "packages").map((w) => join(w.dir, "src") + sep);
  for (const file of ctx.files) {
    if (!isModuleFile(file) || !libs.some((d) => file.startsWith(d))) continue;
    const text = readText(file);
    if (text === undefined) continue;
    const rel = relPath(ctx.root, file);
    const isTest = file.endsWith(".test.ts");
    if (/from\s+["']koffi["']/.test(text) && !rel.includes("/src/sys/")) out.push(error(rel, "imports koffi outside src/sys/"));
    if (!isTest && !rel.includes("/testing/") && /\bprocess\.exit\(/.test(text)) out.push(error(rel, "process.exit in library code"));
    if (!isTest && /\bconsole\.(log|error|warn|info|debug)\(/.test(text)) out.push(error(rel, "console output in library code"));
  }
  return out;
}
