/**
 * Dependency direction between the libraries under `packages/`.
 * @module
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { findCycles } from "../cycles.js";
import { overlaps, relPath } from "../files.js";
import { error, type Finding, type LintContext } from "../finding.js";

/** Where the allowed dependencies live, relative to the repository root. */
export const DEPENDENCY_GRAPH_PATH = "tools/lint/dependency-graph.json";

/**
 * The allowed dependencies of each library (`packages/<name>` → names of the `@vhostkit/*`
 * libraries it may depend on), read from {@link DEPENDENCY_GRAPH_PATH}; empty when the file is
 * missing. Keys starting with `$` are comments.
 * @throws SyntaxError when the file is not JSON; TypeError when an entry is not a list of names.
 */
export function readDependencyGraph(root: string): Map<string, string[]> {
  const path = join(root, DEPENDENCY_GRAPH_PATH);
  const graph = new Map<string, string[]>();
  if (!existsSync(path)) return graph;
  const raw = JSON.parse(readFileSync(path, "utf8")) as Record<string, unknown>;
  for (const [name, deps] of Object.entries(raw)) {
    if (name.startsWith("$")) continue;
    if (!Array.isArray(deps) || deps.some((d) => typeof d !== "string")) throw new TypeError(`${DEPENDENCY_GRAPH_PATH}: "${name}" must list package names`);
    graph.set(name, deps as string[]);
  }
  return graph;
}

/**
 * Each library is in the dependency graph, depends only on the `@vhostkit/*` libraries the graph
 * allows it, and its `tsconfig.json` references mirror those dependencies exactly; the graph itself
 * names only known libraries and has no cycle.
 */
export function dependencies(ctx: LintContext): Finding[] {
  const out: Finding[] = [];
  const graph = readDependencyGraph(ctx.root);
  const libraries = ctx.workspaces.filter((w) => w.kind === "packages");
  const known = new Set(libraries.map((w) => w.name));
  if (overlaps(ctx.scope, join(ctx.root, "tools", "lint"))) {
    for (const [name, deps] of graph) {
      for (const d of deps) if (!known.has(d)) out.push(error(DEPENDENCY_GRAPH_PATH, `"${name}" may depend on "${d}", which is not a package under packages/`));
    }
    for (const cycle of findCycles(graph)) out.push(error(DEPENDENCY_GRAPH_PATH, `the allowed dependencies form a cycle: ${cycle.join(" -> ")}`));
  }
  for (const ws of libraries) {
    if (!overlaps(ctx.scope, ws.dir)) continue;
    const rel = relPath(ctx.root, ws.dir);
    const manifest = JSON.parse(readFileSync(join(ws.dir, "package.json"), "utf8")) as { dependencies?: Record<string, string> };
    const deps = Object.keys(manifest.dependencies ?? {})
      .filter((d) => d.startsWith("@vhostkit/"))
      .map((d) => d.slice("@vhostkit/".length))
      .sort();
    const ok = graph.get(ws.name);
    if (ok === undefined) out.push(error(rel, `not in the dependency graph (${DEPENDENCY_GRAPH_PATH}): add it deliberately`));
    for (const d of deps) if (ok !== undefined && !ok.includes(d)) out.push(error(rel, `depends on @vhostkit/${d}: against the dependency direction`));
    const tsconfigPath = join(ws.dir, "tsconfig.json");
    if (!existsSync(tsconfigPath)) {
      out.push(error(rel, "has no tsconfig.json"));
      continue;
    }
    const tsconfig = JSON.parse(readFileSync(tsconfigPath, "utf8")) as { references?: { path: string }[] };
    const refs = (tsconfig.references ?? []).map((r) => r.path.replace(/^\.\.\//, "")).sort();
    if (refs.join() !== deps.join()) out.push(error(rel, `tsconfig references [${refs}] do not mirror dependencies [${deps}]`));
  }
  return out;
}
