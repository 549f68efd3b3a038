/**
 * tools/scaffold/new-package.sh, run in a temporary copy of the repository's skeleton: the package
 * it creates passes lint, builds, typechecks, passes its own test, pack-check and typedoc (warnings
 * as errors) straight away; it is registered where the repository needs it; bad input writes
 * nothing. The real tree is never touched.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { formatFinding } from "../src/finding.js";
import { lint } from "../src/lint.js";
import { repoRoot, withRepoCopy } from "./helpers/repo-copy.js";

const bin = (name: string): string => join(repoRoot, "node_modules", ".bin", name);

/** Runs `cmd` in `cwd`; fails the test with its output unless it exits with `status`. */
function run(cwd: string, cmd: string, args: readonly string[], status = 0): string {
  const r = spawnSync(cmd, args, { cwd, encoding: "utf8", timeout: 90_000 });
  const out = `${r.stdout ?? ""}${r.stderr ?? ""}`;
  assert.equal(r.status, status, `${cmd} ${args.join(" ")} exited ${r.status ?? r.signal}:\n${out}`);
  return out;
}

const json = (root: string, path: string): Record<string, unknown> => JSON.parse(readFileSync(join(root, path), "utf8")) as Record<string, unknown>;

function lintErrors(root: string): string[] {
  return lint(root).errors.map(formatFinding);
}

describe("new-package.sh", () => {
  test("creates a library that passes lint, build, typecheck, its test, pack-check and docs at once", () => {
    withRepoCopy((root) => {
      run(root, "bash", ["tools/scaffold/new-package.sh", "demo-kit", "A package made by the scaffold test"]);
      assert.deepEqual(lintErrors(root), []);
      run(root, bin("tsc"), ["-b", "packages/demo-kit"]);
      run(root, bin("tsc"), ["-p", "packages/demo-kit/tsconfig.test.json"]);
      run(join(root, "packages", "demo-kit"), bin("bun"), ["test", "./test/index.test.ts"]);
      run(root, bin("bun"), [join(repoRoot, "tools", "pack-check", "src", "main.ts"), join(root, "packages", "demo-kit")]);
      // The repository's typedoc options (docs pages included, warnings are errors) for the new package.
      run(root, bin("typedoc"), ["--entryPoints", "packages/demo-kit", "--readme", "none", "--out", join(root, "docs-out")]);
    });
  });

  test("registers the package: root reference, fixed group, allowed dependencies mirrored everywhere", () => {
    withRepoCopy((root) => {
      const version = (json(root, "packages/wire/package.json")["version"] as string) ?? "";
      run(root, "bash", ["tools/scaffold/new-package.sh", "codec-extras", "Extra codecs", "wire", "regions"]);
      const manifest = json(root, "packages/codec-extras/package.json");
      assert.equal(manifest["version"], version, "starts at the fixed group's version");
      assert.ok(!JSON.stringify(manifest["scripts"]).includes("packages/wire"), "scripts name the new package, not the template");
      assert.deepEqual(manifest["dependencies"], { "@vhostkit/wire": "workspace:*", "@vhostkit/regions": "workspace:*" });
      assert.deepEqual(json(root, "packages/codec-extras/tsconfig.json")["references"], [{ path: "../wire" }, { path: "../regions" }]);
      const refs = (json(root, "tsconfig.json")["references"] as { path: string }[]).map((r) => r.path);
      assert.ok(refs.includes("packages/codec-extras"));
      assert.ok(refs.indexOf("packages/codec-extras") < refs.findIndex((p) => !p.startsWith("packages/")), "before the apps");
      const fixed = (json(root, ".changeset/config.json")["fixed"] as string[][])[0] ?? [];
      assert.ok(fixed.includes("@vhostkit/codec-extras"));
      assert.deepEqual(json(root, "tools/lint/dependency-graph.json")["codec-extras"], ["wire", "regions"]);
      assert.deepEqual(lintErrors(root), []);
    });
  });

  test("refuses a taken name, a name that is not kebab-case and an unknown dependency, writing nothing", () => {
    withRepoCopy((root) => {
      const before = ["tsconfig.json", ".changeset/config.json", "tools/lint/dependency-graph.json"].map((f) => readFileSync(join(root, f), "utf8"));
      assert.match(run(root, "bash", ["tools/scaffold/new-package.sh", "wire", "again"], 2), /already exists/);
      assert.match(run(root, "bash", ["tools/scaffold/new-package.sh", "Bad_Name", "x"], 2), /kebab-case/);
      assert.match(run(root, "bash", ["tools/scaffold/new-package.sh", "ok-name", "x", "nowhere"], 2), /not a package/);
      const after = ["tsconfig.json", ".changeset/config.json", "tools/lint/dependency-graph.json"].map((f) => readFileSync(join(root, f), "utf8"));
      assert.deepEqual(after, before);
      assert.deepEqual(lintErrors(root), []);
    });
  });
});
