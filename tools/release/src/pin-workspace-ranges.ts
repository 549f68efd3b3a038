/**
 * `workspace:` ranges pinned to real versions in the public packages' manifests, for the time of a
 * publish. `changeset publish` runs `npm publish`, and npm ships a manifest as it is: a literal
 * `workspace:*` would reach the registry and no consumer could install the package
 * (changesets#1376). Bun and pnpm rewrite these ranges when they pack; this does the same, with the
 * same rule (`workspace:*` → the exact version, `workspace:^` → `^version`, `workspace:~` →
 * `~version`, `workspace:<range>` → `<range>`), so what `bun pm pack` (and so pack-check) sees is
 * what gets published.
 * @module
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** The part of a package.json this module reads and rewrites. */
interface Manifest {
  name?: string;
  version?: string;
  private?: boolean;
  workspaces?: string[] | { packages?: string[] };
  [field: string]: unknown;
}

/** A workspace package: its directory and parsed manifest. */
export interface WorkspacePackage {
  /** Absolute directory of the package. */
  readonly dir: string;
  /** `name` from its package.json. */
  readonly name: string;
  /** `version` from its package.json (`0.0.0` when it has none). */
  readonly version: string;
  /** True unless the manifest says `"private": true`. */
  readonly public: boolean;
}

/** What {@link pinWorkspaceRanges} changed, and how to put it back. */
export interface PinnedManifests {
  /** The package.json files rewritten (absolute paths). */
  readonly files: readonly string[];
  /** Writes every rewritten file back byte for byte. Safe to call more than once. */
  restore(): void;
}

/** Dependency fields that can hold `workspace:` ranges (devDependencies too, as bun and pnpm do). */
const DEPENDENCY_FIELDS = ["dependencies", "optionalDependencies", "peerDependencies", "devDependencies"] as const;

function readManifest(file: string): Manifest {
  return JSON.parse(readFileSync(file, "utf8")) as Manifest;
}

/**
 * Every package of the workspace rooted at `root`, from the root manifest's `workspaces` (entries
 * `dir` or `dir/*`), sorted by directory.
 */
export function workspacePackages(root: string): WorkspacePackage[] {
  const rootManifest = readManifest(join(root, "package.json"));
  const globs = Array.isArray(rootManifest.workspaces) ? rootManifest.workspaces : (rootManifest.workspaces?.packages ?? []);
  const dirs: string[] = [];
  for (const glob of globs) {
    if (glob.endsWith("/*")) {
      const base = join(root, glob.slice(0, -2));
      if (existsSync(base)) for (const d of readdirSync(base).sort()) dirs.push(join(base, d));
    } else if (!glob.includes("*")) dirs.push(join(root, glob));
    else throw new Error(`workspace pattern "${glob}" is not supported (use "dir" or "dir/*")`);
  }
  return dirs
    .filter((dir) => existsSync(join(dir, "package.json")))
    .map((dir) => {
      const m = readManifest(join(dir, "package.json"));
      if (typeof m.name !== "string") throw new Error(`${dir}/package.json has no name`);
      return { dir, name: m.name, version: m.version ?? "0.0.0", public: m.private !== true };
    });
}

/**
 * The published form of a `workspace:` range for a package at `version`: `*` and the empty range
 * become the exact version, `^` and `~` get it appended, anything else is the range itself.
 */
export function resolveWorkspaceRange(range: string, version: string): string {
  const spec = range.slice("workspace:".length);
  if (spec === "*" || spec === "") return version;
  if (spec === "^" || spec === "~") return `${spec}${version}`;
  return spec;
}

/**
 * Rewrites the `workspace:` ranges of every public package of the workspace at `root` to real
 * versions, in place, and returns how to undo it. Throws, before writing anything, when a range
 * names a package that is not in the workspace.
 */
export function pinWorkspaceRanges(root: string): PinnedManifests {
  const all = workspacePackages(root);
  const versions = new Map(all.map((p) => [p.name, p.version]));
  const rewrites: { file: string; original: string; pinned: string }[] = [];
  for (const pkg of all.filter((p) => p.public)) {
    const file = join(pkg.dir, "package.json");
    const original = readFileSync(file, "utf8");
    const manifest = JSON.parse(original) as Manifest;
    let changed = false;
    for (const field of DEPENDENCY_FIELDS) {
      const deps = manifest[field] as Record<string, string> | undefined;
      for (const [dep, range] of Object.entries(deps ?? {})) {
        if (!range.startsWith("workspace:")) continue;
        const version = versions.get(dep);
        if (version === undefined) throw new Error(`${pkg.name}: ${field}.${dep} is "${range}" but ${dep} is not in the workspace`);
        (deps as Record<string, string>)[dep] = resolveWorkspaceRange(range, version);
        changed = true;
      }
    }
    if (changed) rewrites.push({ file, original, pinned: `${JSON.stringify(manifest, null, 2)}\n` });
  }
  for (const r of rewrites) writeFileSync(r.file, r.pinned);
  return {
    files: rewrites.map((r) => r.file),
    restore() {
      for (const r of rewrites) writeFileSync(r.file, r.original);
    },
  };
}
