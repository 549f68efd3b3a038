/**
 * Test files run under Bun and Node and leave nothing focused, skipped or pending.
 * @module
 */
import { readText, relPath } from "../files.js";
import { error, type Finding, type LintContext } from "../finding.js";

/** Every `*.test.ts` uses `node:test` (not `bun:test`) and has no `.only` / `.skip` / `.todo`. */
export function testHygiene(ctx: LintContext): Finding[] {
  const out: Finding[] = [];
  for (const file of ctx.files) {
    if (!file.endsWith(".test.ts")) continue;
    const text = readText(file);
    if (text === undefined) continue;
    const rel = relPath(ctx.root, file);
    if (/\b(test|it|describe)\.(only|skip|todo)\(/.test(text) || /\{\s*(skip|todo|only)\s*:/.test(text)) out.push(error(rel, "focused, skipped or todo test"));
    if (/from\s+["']bun:test["']/.test(text)) out.push(error(rel, "imports bun:test (use node:test so the file runs under Node too)"));
  }
  return out;
}
