/**
 * `pinWorkspaceRanges` on a small workspace in a temp dir: every `workspace:` form of every
 * dependency field of a public package becomes what bun and pnpm publish, private packages are left
 * alone, `restore()` gives the files back byte for byte, and an unknown workspace name changes
 * nothing.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pinWorkspaceRanges, resolveWorkspaceRange, workspacePackages } from "../src/pin-workspace-ranges.js";

function workspace(manifests: Record<string, object>): string {
  const root = mkdtempSync(join(tmpdir(), "vhostkit-pin-"));
  writeFileSync(join(root, "package.json"), JSON.stringify({ name: "root", private: true, workspaces: ["packages/*", "tools/*"] }));
  for (const [dir, m] of Object.entries(manifests)) {
    mkdirSync(join(root, dir), { recursive: true });
    writeFileSync(join(root, dir, "package.json"), `${JSON.stringify(m, null, 4)}\n`);
  }
  return root;
}

function manifest(root: string, dir: string): Record<string, Record<string, string>> {
  return JSON.parse(readFileSync(join(root, dir, "package.json"), "utf8")) as Record<string, Record<string, string>>;
}

test("resolveWorkspaceRange: * and empty → exact, ^ and ~ → prefixed, an explicit range → itself", () => {
  assert.equal(resolveWorkspaceRange("workspace:*", "1.2.3"), "1.2.3");
  assert.equal(resolveWorkspaceRange("workspace:", "1.2.3"), "1.2.3");
  assert.equal(resolveWorkspaceRange("workspace:^", "1.2.3"), "^1.2.3");
  assert.equal(resolveWorkspaceRange("workspace:~", "1.2.3"), "~1.2.3");
  assert.equal(resolveWorkspaceRange("workspace:>=1.0.0", "1.2.3"), ">=1.0.0");
});

test("pinWorkspaceRanges pins the public packages' ranges in every dependency field and restore() undoes it exactly", () => {
  const root = workspace({
    "packages/a": { name: "@x/a", version: "0.3.0", dependencies: { koffi: "3.3.4" } },
    "packages/b": {
      name: "@x/b",
      version: "0.3.0",
      dependencies: { "@x/a": "workspace:*", koffi: "3.3.4" },
      peerDependencies: { "@x/a": "workspace:^" },
      optionalDependencies: { "@x/a": "workspace:~" },
      devDependencies: { "@x/tool": "workspace:*" },
    },
    "tools/tool": { name: "@x/tool", private: true, dependencies: { "@x/a": "workspace:*" } },
  });
  try {
    assert.deepEqual(
      workspacePackages(root).map((p) => [p.name, p.version, p.public]),
      [
        ["@x/a", "0.3.0", true],
        ["@x/b", "0.3.0", true],
        ["@x/tool", "0.0.0", false],
      ],
    );
    const before = readFileSync(join(root, "packages/b/package.json"), "utf8");
    const pinned = pinWorkspaceRanges(root);
    assert.deepEqual(pinned.files, [join(root, "packages/b/package.json")], "only the manifest with workspace: ranges is rewritten");
    const b = manifest(root, "packages/b");
    assert.deepEqual(b["dependencies"], { "@x/a": "0.3.0", koffi: "3.3.4" });
    assert.deepEqual(b["peerDependencies"], { "@x/a": "^0.3.0" });
    assert.deepEqual(b["optionalDependencies"], { "@x/a": "~0.3.0" });
    assert.deepEqual(b["devDependencies"], { "@x/tool": "0.0.0" });
    assert.equal(manifest(root, "tools/tool")["dependencies"]?.["@x/a"], "workspace:*", "a private package is not published, so not pinned");
    pinned.restore();
    assert.equal(readFileSync(join(root, "packages/b/package.json"), "utf8"), before);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("pinWorkspaceRanges refuses a workspace: range to a package outside the workspace and writes nothing", () => {
  const root = workspace({
    "packages/a": { name: "@x/a", version: "1.0.0", dependencies: { "@x/b": "workspace:*" } },
    "packages/c": { name: "@x/c", version: "1.0.0", dependencies: { "@x/a": "workspace:*" } },
  });
  try {
    const before = readFileSync(join(root, "packages/c/package.json"), "utf8");
    assert.throws(() => pinWorkspaceRanges(root), /@x\/a: dependencies\.@x\/b is "workspace:\*" but @x\/b is not in the workspace/);
    assert.equal(readFileSync(join(root, "packages/c/package.json"), "utf8"), before);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
