/**
 * A temporary copy of the parts of this repository that the scaffold and the repo-wide gates read:
 * the root manifests and configs, the docs, the lint's dependency graph, the scaffold itself, and
 * every library's manifest and tsconfigs (not their sources). `node_modules` is a link to the real
 * one, so tsc, typedoc and bun-types resolve. Nothing of the real tree is written.
 */
import { cpSync, existsSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * The real repository root: the nearest ancestor holding the scaffold. Found by walking up, because
 * under the runner's Node leg this module is bundled into a file one directory higher.
 */
export const repoRoot = ((): string => {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, "tools", "scaffold", "new-package.sh"))) {
    const up = dirname(dir);
    if (up === dir) throw new Error("repo-copy: no repository root above this file");
    dir = up;
  }
  return dir;
})();

const ROOT_FILES = [
  "package.json",
  "tsconfig.base.json",
  "tsconfig.json",
  "typedoc.json",
  ".changeset/config.json",
  "tools/lint/dependency-graph.json",
  "tools/scaffold/new-package.sh",
  "tools/scaffold/new-package.mjs",
];
const LIBRARY_FILES = ["package.json", "tsconfig.json", "tsconfig.test.json"];

/** Copies the repository's skeleton into a fresh temporary directory, runs `fn`, removes it. */
export function withRepoCopy<T>(fn: (root: string) => T): T {
  const root = mkdtempSync(join(tmpdir(), "vhostkit-scaffold-"));
  try {
    for (const f of ROOT_FILES) cpSync(join(repoRoot, f), join(root, f), { preserveTimestamps: true });
    cpSync(join(repoRoot, "docs"), join(root, "docs"), { recursive: true });
    for (const lib of readdirSync(join(repoRoot, "packages"))) {
      for (const f of LIBRARY_FILES) {
        const src = join(repoRoot, "packages", lib, f);
        if (existsSync(src)) cpSync(src, join(root, "packages", lib, f));
      }
    }
    symlinkSync(join(repoRoot, "node_modules"), join(root, "node_modules"));
    return fn(root);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}
