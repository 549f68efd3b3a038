/**
 * Import cycles between the source files of one workspace.
 * @module
 */
import { existsSync, statSync } from "node:fs";
import { dirname, join, resolve, sep } from "node:path";
import { findCycles } from "../cycles.js";
import { isModuleFile, overlaps, readText, relPath } from "../files.js";
import { error, type Finding, type LintContext } from "../finding.js";

/**
 * Module specifiers of every static import and re-export (`import … from`, `import "…"`,
 * `export … from`, type-only forms included) and every `import("…")` (dynamic imports and
 * `import("…").Type` type references).
 */
const SPECIFIERS = /\b(?:import|export)\s+(?:type\s+)?(?:[\w*{}\s,$]+?\s+from\s+)?["']([^"']+)["']|\bimport\(\s*["']([^"']+)["']\s*\)/g;

/** The source file a relative specifier names, or `undefined` when it is not a file of this tree. */
function resolveSpecifier(from: string, spec: string): string | undefined {
  const base = resolve(dirname(from), spec);
  const candidates = [base.replace(/\.js$/, ".ts").replace(/\.mjs$/, ".mts"), base, `${base}.ts`, join(base, "index.ts")];
  for (const c of candidates) if (existsSync(c) && statSync(c).isFile()) return c;
  return undefined;
}

/** Relative import edges between the module files of `srcDir`: file → the files it imports. */
export function importGraph(files: readonly string[], srcDir: string): Map<string, string[]> {
  const edges = new Map<string, string[]>();
  const inSrc = (p: string): boolean => p.startsWith(srcDir + sep);
  for (const file of files) {
    if (!inSrc(file) || !isModuleFile(file)) continue;
    const text = readText(file);
    if (text === undefined) continue;
    // Comments may quote import lines; they are not imports. Only comments that start a line are
    // dropped, so a string such as "src/**/*.ts" is never mistaken for the start of one.
    const code = text.replace(/^\s*\/\*[\s\S]*?\*\//gm, "").replace(/^\s*\/\/.*$/gm, "");
    const targets = new Set<string>();
    for (const m of code.matchAll(SPECIFIERS)) {
      const spec = (m[1] ?? m[2]) as string;
      if (!spec.startsWith("./") && !spec.startsWith("../")) continue;
      const target = resolveSpecifier(file, spec);
      if (target !== undefined && inSrc(target)) targets.add(target);
    }
    edges.set(file, [...targets].sort());
  }
  return edges;
}

/**
 * No import cycles between the source files (`src/**`) of a workspace. Every relative import
 * counts, **type-only imports included**: they are erased at run time, but two files that need each
 * other's declarations still cannot be read, tested or split one without the other, which is what
 * this rule is for. One error per cycle, naming the path (`a.ts -> b.ts -> a.ts`).
 */
export function importCycles(ctx: LintContext): Finding[] {
  const out: Finding[] = [];
  for (const ws of ctx.workspaces) {
    if (!overlaps(ctx.scope, ws.dir)) continue;
    const srcDir = join(ws.dir, "src");
    if (!existsSync(srcDir)) continue;
    for (const cycle of findCycles(importGraph(ctx.files, srcDir))) {
      const path = cycle.map((f) => relPath(srcDir, f)).join(" -> ");
      out.push(error(relPath(ctx.root, cycle[0] as string), `import cycle in ${relPath(ctx.root, ws.dir)}/src: ${path}`));
    }
  }
  return out;
}
