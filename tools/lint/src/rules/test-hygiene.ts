/**
 * Test files run under Bun and Node and leave nothing focused, skipped or pending; and no code
 * calls what Node 20 (the oldest Node the packages support) lacks.
 * @module
 */
import { readText, relPath } from "../files.js";
import { error, type Finding, type LintContext } from "../finding.js";

/** Calls Node 20 does not have (each added in Node 22), with what to write instead. */
const NOT_IN_NODE_20: readonly (readonly [RegExp, string])[] = [
  [/\bPromise\.withResolvers\s*[<(]/, "Promise.withResolvers is not in Node 20: capture resolve from new Promise((r) => ...)"],
];

/**
 * Every `*.test.ts` uses `node:test` (not `bun:test`) and has no `.only` / `.skip` / `.todo`; no
 * `.ts` / `.mjs` file calls an API Node 20 lacks ({@link NOT_IN_NODE_20}): the test suite runs every
 * test under Node 20 too, and the packages promise Node >= 20.
 */
export function testHygiene(ctx: LintContext): Finding[] {
  const out: Finding[] = [];
  for (const file of ctx.files) {
    if (!file.endsWith(".ts") && !file.endsWith(".mjs")) continue;
    const text = readText(file);
    if (text === undefined) continue;
    const rel = relPath(ctx.root, file);
    for (const [pattern, message] of NOT_IN_NODE_20) if (pattern.test(text)) out.push(error(rel, message));
    if (!file.endsWith(".test.ts")) continue;
    if (/\b(test|it|describe)\.(only|skip|todo)\(/.test(text) || /\{\s*(skip|todo|only)\s*:/.test(text)) out.push(error(rel, "focused, skipped or todo test"));
    if (/from\s+["']bun:test["']/.test(text)) out.push(error(rel, "imports bun:test (use node:test so the file runs under Node too)"));
  }
  return out;
}
