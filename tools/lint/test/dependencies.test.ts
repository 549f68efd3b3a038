/**
 * Dependency direction between libraries, the allowed-dependency graph, and the other structural
 * rules (koffi confinement, library hygiene, test hygiene, file size).
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { lint } from "../src/lint.js";
import { dependencies } from "../src/rules/dependencies.js";
import { fileSize } from "../src/rules/file-size.js";
import { libraryCode } from "../src/rules/library-code.js";
import { testHygiene } from "../src/rules/test-hygiene.js";
import { graph, library, withTree, type Files } from "./helpers/fixture-tree.js";

function messages(files: Files, rule = dependencies): string[] {
  return withTree(files, (root) => lint(root, { rules: [rule] }).errors.map((f) => `${f.file}: ${f.message}`));
}

describe("dependency direction", () => {
  test("libraries that depend as the graph allows, with mirrored references, pass", () => {
    assert.deepEqual(messages({ ...graph({ wire: [], transport: ["wire"] }), ...library("wire"), ...library("transport", ["wire"]) }), []);
  });

  test("a library missing from the graph, a dependency against it, and unmirrored references are errors", () => {
    const files: Files = {
      ...graph({ wire: [], transport: ["wire"] }),
      ...library("wire", ["transport"]),
      ...library("transport", ["wire"]),
      ...library("extra"),
      "packages/transport/tsconfig.json": JSON.stringify({ references: [] }),
    };
    assert.deepEqual(messages(files), [
      "packages/extra: not in the dependency graph (tools/lint/dependency-graph.json): add it deliberately",
      "packages/transport: tsconfig references [] do not mirror dependencies [wire]",
      "packages/wire: depends on @vhostkit/transport: against the dependency direction",
    ]);
  });

  test("the graph itself must name known libraries and be acyclic; $-keys are comments", () => {
    const files: Files = { ...graph({ $comment: "x" as never, a: ["b"], b: ["a", "ghost"] }), ...library("a", ["b"]), ...library("b", ["a"]) };
    assert.deepEqual(messages(files), [
      'tools/lint/dependency-graph.json: "b" may depend on "ghost", which is not a package under packages/',
      "tools/lint/dependency-graph.json: the allowed dependencies form a cycle: a -> b -> a",
    ]);
  });
});

describe("library and test hygiene", () => {
  test("koffi outside src/sys, process.exit and console in library sources are errors", () => {
    const files = library("a", [], {
      "x.ts": 'import koffi from "koffi";\nconsole.log(koffi);\nprocess.exit(1);\n',
      "sys/ok.ts": 'import koffi from "koffi";\nexport { koffi };\n',
      "testing/helper.ts": "export const bye = () => process.exit(0);\n",
    });
    assert.deepEqual(messages(files, libraryCode), [
      "packages/a/src/x.ts: imports koffi outside src/sys/",
      "packages/a/src/x.ts: process.exit in library code",
      "packages/a/src/x.ts: console output in library code",
    ]);
  });

  test("bun:test and focused or skipped tests are errors", () => {
    // Spelled in parts, so that this file does not trip the rule when the repository is linted.
    const [bunTest, only, skip] = ["bun:" + "test", "test." + "only(", "{ skip" + ": true }"];
    const files = {
      "tools/t/package.json": "{}",
      "tools/t/test/a.test.ts": `import { test } from "${bunTest}";\n`,
      "tools/t/test/b.test.ts": `import { test } from "node:test";\n${only}"x", () => {});\n`,
      "tools/t/test/c.test.ts": `import { test } from "node:test";\ntest("x", ${skip}, () => {});\n`,
    };
    assert.deepEqual(messages(files, testHygiene), [
      "tools/t/test/a.test.ts: imports bun:test (use node:test so the file runs under Node too)",
      "tools/t/test/b.test.ts: focused, skipped or todo test",
      "tools/t/test/c.test.ts: focused, skipped or todo test",
    ]);
  });
});

describe("file size", () => {
  const lines = (n: number): string => "export const x = 1;\n".repeat(n);

  test("a source file over 500 lines is a warning, never an error; tests and 500 lines are fine", () => {
    const files = library("a", [], { "big.ts": lines(501), "fine.ts": lines(500), "big.test.ts": lines(900) });
    const report = withTree(files, (root) => lint(root, { rules: [fileSize] }));
    assert.deepEqual(report.errors, []);
    assert.deepEqual(
      report.warnings.map((w) => `${w.file}: ${w.message}`),
      ["packages/a/src/big.ts: 501 lines (more than 500): consider splitting it by concern"],
    );
  });
});
