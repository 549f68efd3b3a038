/**
 * The local registry of the release rehearsal: Verdaccio (`src/registry.mjs`) with no uplinks,
 * seeded with the third-party packages our libraries depend on, taken from the workspace's own
 * install, so the rehearsal needs no network.
 */
import { existsSync, readFileSync, realpathSync } from "node:fs";
import { dirname, join } from "node:path";
import { workspacePackages } from "../../src/pin-workspace-ranges.js";

/** A third-party package as installed in the workspace. */
export interface InstalledPackage {
  readonly name: string;
  readonly version: string;
  /** Its real directory (the extracted tarball). */
  readonly dir: string;
}

interface Manifest {
  name: string;
  version: string;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
}

/** Node's lookup: `<dir>/node_modules/<name>`, then the same in each parent directory. */
function resolvePackageDir(from: string, name: string): string | undefined {
  for (let dir = from; ; dir = dirname(dir)) {
    const candidate = join(dir, "node_modules", name);
    if (existsSync(join(candidate, "package.json"))) return realpathSync(candidate);
    if (dirname(dir) === dir) return undefined;
  }
}

/**
 * The non-workspace dependencies of the public packages of the workspace at `root`, with their
 * own dependencies, as installed: optional dependencies that were not installed (other platforms'
 * builds) are left out; a missing required one is an error.
 */
export function thirdPartyDependencies(root: string): InstalledPackage[] {
  const found = new Map<string, InstalledPackage>();
  const visit = (from: string, deps: Record<string, string>, optional: boolean): void => {
    for (const [name, range] of Object.entries(deps)) {
      if (range.startsWith("workspace:")) continue;
      const dir = resolvePackageDir(from, name);
      if (dir === undefined) {
        if (optional) continue;
        throw new Error(`${name} (needed from ${from}) is not installed: run bun install first`);
      }
      const m = JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as Manifest;
      const key = `${m.name}@${m.version}`;
      if (found.has(key)) continue;
      found.set(key, { name: m.name, version: m.version, dir });
      visit(dir, m.dependencies ?? {}, false);
      visit(dir, m.optionalDependencies ?? {}, true);
    }
  };
  for (const p of workspacePackages(root).filter((w) => w.public)) {
    const m = JSON.parse(readFileSync(join(p.dir, "package.json"), "utf8")) as Manifest;
    visit(p.dir, m.dependencies ?? {}, false);
    visit(p.dir, m.optionalDependencies ?? {}, true);
  }
  return [...found.values()];
}

/** The versions of `name` the registry at `url` has, and its dist-tags (via the npm registry API). */
export async function registryVersions(
  url: string,
  name: string,
): Promise<{ versions: Record<string, { dependencies?: Record<string, string> }>; tags: Record<string, string> }> {
  const res = await fetch(new URL(name.replace("/", "%2f"), url), { signal: AbortSignal.timeout(10_000) });
  if (!res.ok) throw new Error(`GET ${name} from ${url}: ${res.status}`);
  const doc = (await res.json()) as { versions: Record<string, { dependencies?: Record<string, string> }>; "dist-tags": Record<string, string> };
  return { versions: doc.versions, tags: doc["dist-tags"] };
}
