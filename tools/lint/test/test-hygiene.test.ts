/**
 * The test-hygiene rule on small trees: focused or skipped tests, bun:test imports, and calls Node 20
 * lacks (in tests and in library code alike) are errors.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { lint } from "../src/lint.js";
import { testHygiene } from "../src/rules/test-hygiene.js";
import { library, withTree, type Files } from "./helpers/fixture-tree.js";

/** Findings of the rule over `files`, as `file: message`. */
function findings(files: Files): string[] {
  return withTree(files, (root) => lint(root, { rules: [testHygiene] }).errors.map((f) => `${f.file}: ${f.message}`));
}

// Spelled apart so that this file does not break the rules it tests.
const WITH_RESOLVERS = "Promise." + "withResolvers";
const BUN_TEST = "bun" + ":test";

describe("test hygiene", () => {
  test("a plain node:test file and library code pass", () => {
    const files: Files = {
      ...library("a"),
      "packages/a/test/a.test.ts": 'import { test } from "node:test";\ntest("x", () => {});\nconst p = new Promise<void>((r) => r());\n',
    };
    assert.deepEqual(findings(files), []);
  });

  test("Promise.withResolvers is an error in a test and in library code (.ts and .mjs)", () => {
    const files: Files = {
      ...library("a", [], { "index.ts": `export const x = ${WITH_RESOLVERS}<void>();\n` }),
      "packages/a/test/a.test.ts": `import { test } from "node:test";\nconst { promise } = ${WITH_RESOLVERS}();\n`,
      "packages/a/examples/e.mjs": `const r = ${WITH_RESOLVERS}();\n// ${WITH_RESOLVERS} in a comment is no call\n`,
    };
    const found = findings(files).sort();
    assert.equal(found.length, 3, found.join("\n"));
    for (const f of found) assert.match(f, /Promise\.withResolvers is not in Node 20/);
  });

  test("focused and skipped tests and bun:test imports are errors", () => {
    const files: Files = {
      ...library("a"),
      "packages/a/test/a.test.ts": `import { test } from "${BUN_TEST}";\ntest.only("x", () => {});\n`,
    };
    assert.deepEqual(findings(files).sort(), [
      "packages/a/test/a.test.ts: focused, skipped or todo test",
      "packages/a/test/a.test.ts: imports bun:test (use node:test so the file runs under Node too)",
    ]);
  });
});
