/**
 * Walking the repository: which directories the lint never enters, and the workspaces it checks.
 * @module
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative, sep } from "node:path";

/** Directory names never entered: dependencies, build output, generated docs, VCS and caches. */
const SKIPPED_DIRS: ReadonlySet<string> = new Set(["node_modules", "dist", "docs-out", ".git", ".turbo", "tmp"]);

/** Hidden directories that hold repository content and are walked anyway. */
const HIDDEN_CONTENT_DIRS: ReadonlySet<string> = new Set([".changeset", ".ci"]);

/** Largest file read as text, bytes (larger files are data, not prose or source). */
const MAX_TEXT_BYTES = 1 << 20;

/**
 * Every file below `dir`, skipping dependencies, build output, generated docs and hidden entries
 * (except `.changeset` and `.ci`, which are repository content). Paths are absolute, sorted. A
 * `dir` that is a file gives just that file.
 */
export function walkFiles(dir: string, out: string[] = []): string[] {
  if (!existsSync(dir)) return out;
  if (statSync(dir).isFile()) {
    out.push(dir);
    return out;
  }
  for (const e of readdirSync(dir).sort()) {
    if (SKIPPED_DIRS.has(e) || (e.startsWith(".") && !HIDDEN_CONTENT_DIRS.has(e))) continue;
    const p = join(dir, e);
    const st = statSync(p);
    if (st.isDirectory()) walkFiles(p, out);
    else if (st.isFile()) out.push(p);
  }
  return out;
}

/** TypeScript and JavaScript module files (`.ts`, `.mts`, `.mjs`), as the source rules see them. */
export function isModuleFile(path: string): boolean {
  return /\.(ts|mts|mjs)$/.test(path) && !path.endsWith(".d.ts") && !path.endsWith(".d.mts");
}

/** The file's text, or `undefined` when it is too large or binary (a NUL byte). */
export function readText(path: string): string | undefined {
  if (statSync(path).size > MAX_TEXT_BYTES) return undefined;
  const text = readFileSync(path, "utf8");
  return text.includes("\0") ? undefined : text;
}

/** 1-based line of character `index` in `text` (where a finding points). */
export function lineAt(text: string, index: number): number {
  let n = 1;
  for (let i = text.indexOf("\n"); i !== -1 && i < index; i = text.indexOf("\n", i + 1)) n++;
  return n;
}

/** `path` relative to `root`, with `/` separators (how findings name files). */
export function relPath(root: string, path: string): string {
  return relative(root, path).split(sep).join("/");
}

/** A workspace of the monorepo: `packages/<name>`, `apps/<name>` or `tools/<name>` with a package.json. */
export interface Workspace {
  /** `packages`, `apps` or `tools`. */
  readonly kind: "packages" | "apps" | "tools";
  /** Directory name, e.g. `wire`. */
  readonly name: string;
  /** Absolute directory. */
  readonly dir: string;
}

/** The workspaces below `root`, in `packages`, `apps`, `tools` order, each sorted by name. */
export function workspaces(root: string): Workspace[] {
  const out: Workspace[] = [];
  for (const kind of ["packages", "apps", "tools"] as const) {
    const base = join(root, kind);
    if (!existsSync(base)) continue;
    for (const name of readdirSync(base).sort()) {
      const dir = join(base, name);
      if (existsSync(join(dir, "package.json"))) out.push({ kind, name, dir });
    }
  }
  return out;
}

/** True when one of the directories `scope` and `dir` contains the other (or they are the same). */
export function overlaps(scope: string, dir: string): boolean {
  const s = scope.endsWith(sep) ? scope : scope + sep;
  const d = dir.endsWith(sep) ? dir : dir + sep;
  return d.startsWith(s) || s.startsWith(d);
}
