/**
 * The error-code style rule on small trees: exported `…ErrorCode` unions hold SCREAMING_SNAKE codes.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { lint } from "../src/lint.js";
import { errorCodes, screamingSnake } from "../src/rules/error-codes.js";
import { library, withTree, type Files } from "./helpers/fixture-tree.js";

/** Findings of the error-code rule over `files`, as `file:line: message`. */
function findings(files: Files): string[] {
  return withTree(files, (root) => lint(root, { rules: [errorCodes] }).errors.map((f) => `${f.file}:${f.line ?? ""}: ${f.message}`));
}

describe("error codes", () => {
  test("SCREAMING_SNAKE members pass, on one line or many, with comments between them", () => {
    const src = [
      'export type WireErrorCode = "SHORT_HEADER" | "EOF" | "TOO_MANY_FDS";',
      "export type AErrorCode =",
      '  | "BAD_FD" // a comment with "lower-case" words',
      '  /* "and-this" */ | "V2_ONLY";',
    ].join("\n");
    assert.deepEqual(findings(library("a", [], { "errors.ts": `${src}\n` })), []);
  });

  test("a kebab-case or camelCase member is an error at its line, with the spelling to use", () => {
    const src = ["/** Codes. */", "export type FrontendErrorCode =", '  | "PROTOCOL"', '  | "io-error"', "  | 'badArgument';", ""].join("\n");
    assert.deepEqual(findings(library("a", [], { "errors.ts": src })), [
      'packages/a/src/errors.ts:4: FrontendErrorCode has the code "io-error": error codes are SCREAMING_SNAKE (e.g. "IO_ERROR")',
      'packages/a/src/errors.ts:5: FrontendErrorCode has the code "badArgument": error codes are SCREAMING_SNAKE (e.g. "BAD_ARGUMENT")',
    ]);
  });

  test("the union ends at its semicolon; other types, unexported ones and tests are not checked", () => {
    const files: Files = {
      ...library("a", [], {
        "errors.ts": 'export type AErrorCode = "OK";\nexport type Kind = "retry" | "broken";\ntype LocalErrorCode = "local-only";\n',
      }),
      "packages/a/test/x.test.ts": 'export type TestErrorCode = "in-a-test";\n',
      "apps/b/package.json": "{}",
      "apps/b/src/main.ts": 'export type CliErrorCode = "usage" | "IO";\n',
    };
    assert.deepEqual(findings(files), ['apps/b/src/main.ts:1: CliErrorCode has the code "usage": error codes are SCREAMING_SNAKE (e.g. "USAGE")']);
  });

  test("the suggested spelling", () => {
    assert.equal(screamingSnake("bad-shmem-config"), "BAD_SHMEM_CONFIG");
    assert.equal(screamingSnake("outOfMemory"), "OUT_OF_MEMORY");
    assert.equal(screamingSnake("read only"), "READ_ONLY");
  });
});
