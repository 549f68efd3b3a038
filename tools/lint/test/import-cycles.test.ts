/**
 * Import cycles between the source files of a workspace, and the cycle finder behind them.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { findCycles } from "../src/cycles.js";
import { lint } from "../src/lint.js";
import { importCycles } from "../src/rules/import-cycles.js";
import { library, withTree, type Files } from "./helpers/fixture-tree.js";

function cycles(files: Files): string[] {
  return withTree(files, (root) => lint(root, { rules: [importCycles] }).errors.map((f) => `${f.file}: ${f.message}`));
}

describe("findCycles", () => {
  test("one shortest cycle per strongly connected component, sorted, self-loops included", () => {
    const edges = new Map<string, string[]>([
      ["a", ["b"]],
      ["b", ["c", "a"]],
      ["c", ["a"]],
      ["d", ["d"]],
      ["e", ["a"]],
    ]);
    assert.deepEqual(findCycles(edges), [
      ["a", "b", "a"],
      ["d", "d"],
    ]);
  });

  test("an acyclic graph has none", () => {
    assert.deepEqual(
      findCycles(
        new Map([
          ["a", ["b", "c"]],
          ["b", ["c"]],
        ]),
      ),
      [],
    );
  });
});

describe("import cycles in src/", () => {
  test("a two-file cycle is an error naming the path", () => {
    const found = cycles(
      library("a", [], {
        "device.ts": 'import { g } from "./guest.js";\nexport const d = g;\n',
        "guest.ts": 'import { d } from "./device.js";\nexport const g = 1;\n',
      }),
    );
    assert.deepEqual(found, ["packages/a/src/device.ts: import cycle in packages/a/src: device.ts -> guest.ts -> device.ts"]);
  });

  test("type-only imports, re-exports, side-effect and dynamic imports count; sub-folders resolve", () => {
    const found = cycles({
      ...library("a", [], {
        "a.ts": 'import type { B } from "./b.js";\nexport type A = B;\n',
        "b.ts": 'export { c } from "./sub/index.js";\nexport type B = number;\n',
        "sub/index.ts": 'import "../d.js";\nexport const c = 1;\n',
        "d.ts": 'export const load = () => import("./a.js");\n',
      }),
    });
    assert.deepEqual(found, ["packages/a/src/a.ts: import cycle in packages/a/src: a.ts -> b.ts -> sub/index.ts -> d.ts -> a.ts"]);
  });

  test("imports quoted in comments, from other packages, or from tests outside src/ do not count", () => {
    const found = cycles({
      ...library("a", [], {
        "a.ts": '/**\n * import { b } from "./b.js";\n */\n// import { b } from "./b.js";\nimport { w } from "@vhostkit/wire";\nexport const a = w;\n',
        "b.ts": 'import { a } from "./a.js";\nexport const b = a;\n',
      }),
      "packages/a/test/a.test.ts": 'import { a } from "../src/a.js";\nimport { t } from "./t.js";\n',
      "packages/a/test/t.ts": 'import "./a.test.js";\nexport const t = 1;\n',
    });
    assert.deepEqual(found, []);
  });

  test("apps and tools are checked as well", () => {
    const found = cycles({
      "apps/x/package.json": "{}",
      "apps/x/src/a.ts": 'import "./b.js";\n',
      "apps/x/src/b.ts": 'import "./a.js";\n',
      "tools/y/package.json": "{}",
      "tools/y/src/self.ts": 'import "./self.js";\n',
    });
    assert.deepEqual(found, [
      "apps/x/src/a.ts: import cycle in apps/x/src: a.ts -> b.ts -> a.ts",
      "tools/y/src/self.ts: import cycle in tools/y/src: self.ts -> self.ts",
    ]);
  });

  test("a run limited to another workspace does not report it", () => {
    const files = { ...library("a", [], { "a.ts": 'import "./a.js";\n' }), ...library("b") };
    assert.equal(
      withTree(files, (root) => lint(root, { rules: [importCycles], scope: "packages/b" }).errors.length),
      0,
    );
  });
});
