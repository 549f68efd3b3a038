/**
 * Small repository trees in temporary directories, for the lint rules' tests.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";

/** Text of every file, by path relative to the tree's root. */
export type Files = Readonly<Record<string, string>>;

/** A library `packages/<name>` whose manifest and tsconfig agree on `deps`. */
export function library(name: string, deps: readonly string[] = [], src: Files = { "index.ts": "export const x = 1;\n" }): Files {
  const files: Record<string, string> = {
    [`packages/${name}/package.json`]: JSON.stringify({
      name: `@vhostkit/${name}`,
      dependencies: Object.fromEntries(deps.map((d) => [`@vhostkit/${d}`, "workspace:*"])),
    }),
    [`packages/${name}/tsconfig.json`]: JSON.stringify({ references: deps.map((d) => ({ path: `../${d}` })) }),
  };
  for (const [path, text] of Object.entries(src)) files[`packages/${name}/src/${path}`] = text;
  return files;
}

/** `tools/lint/dependency-graph.json` allowing exactly `graph`. */
export function graph(allowed: Readonly<Record<string, readonly string[]>>): Files {
  return { "tools/lint/dependency-graph.json": JSON.stringify(allowed) };
}

/**
 * Writes `files` into a fresh temporary directory, runs `fn` with its path, and removes the
 * directory afterwards whatever happens.
 */
export function withTree<T>(files: Files, fn: (root: string) => T): T {
  const root = mkdtempSync(join(tmpdir(), "vhostkit-lint-"));
  try {
    for (const [path, text] of Object.entries(files)) {
      const p = join(root, path);
      mkdirSync(dirname(p), { recursive: true });
      writeFileSync(p, text);
    }
    return fn(root);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}
