/**
 * pack-check: packs one public package exactly as `bun publish` would (`bun pm pack`), then checks
 * the tarball: publint (strict), `attw` with the esm-only profile, no `workspace:` ranges left in the
 * packed manifest, and no test files shipped. The shipped JavaScript and declarations import only
 * Node built-ins, the package itself and its `dependencies`, and every dependency is imported (a
 * package ships with its runtime dependencies only). Each `bin` (the apps' commands) is in the tarball and starts
 * with `#!/usr/bin/env node`, so that `npx` runs it with Node and `bunx --bun` with Bun. Every
 * shipped `dist/` module has its source in `src/` (`tsc -b` never deletes the output of a source
 * that was removed or renamed, so a stale module would otherwise ship).
 *
 * Usage: `bun tools/pack-check/src/main.ts <package-dir>`. Exit 1 on any problem.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { builtinModules } from "node:module";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const dir = resolve(process.argv[2] ?? ".");
const bin = join(import.meta.dir, "..", "..", "..", "node_modules", ".bin");
const out = mkdtempSync(join(tmpdir(), "vhostkit-pack-"));
const problems: string[] = [];

function sh(cmd: string, args: string[], cwd = dir): string {
  const r = spawnSync(cmd, args, { cwd, encoding: "utf8" });
  const text = `${r.stdout}${r.stderr}`;
  if (r.status !== 0) problems.push(`${cmd.split("/").pop()} ${args.join(" ")}:\n${text}`);
  return text;
}

try {
  sh(process.execPath, ["pm", "pack", "--destination", out, "--quiet"]);
  const tgz = readdirSync(out).find((f) => f.endsWith(".tgz"));
  if (!tgz) throw new Error("bun pm pack produced no tarball");
  const tarball = join(out, tgz);
  sh(join(bin, "publint"), ["run", tarball, "--strict", "--pack", "false"]);
  sh(join(bin, "attw"), [tarball, "--profile", "esm-only", "--no-emoji"]);
  const manifest = spawnSync("tar", ["-xOzf", tarball, "package/package.json"], { encoding: "utf8" }).stdout;
  if (manifest.includes("workspace:")) problems.push("packed package.json still contains workspace: ranges");
  const files = spawnSync("tar", ["-tzf", tarball], { encoding: "utf8" }).stdout.split("\n");
  const tests = files.filter((f) => /\.test\.(ts|js|mjs)$/.test(f));
  if (tests.length > 0) problems.push(`tarball ships test files: ${tests.slice(0, 5).join(", ")}`);
  if (!files.includes("package/README.md")) problems.push("tarball has no README.md");
  problems.push(...checkStale(files));
  const unpacked = join(out, "unpacked");
  sh("mkdir", ["-p", unpacked]);
  sh("tar", ["-xzf", tarball, "-C", unpacked]);
  problems.push(...checkImports(join(unpacked, "package")), ...checkBins(join(unpacked, "package")));
} catch (e) {
  problems.push(String(e));
} finally {
  rmSync(out, { recursive: true, force: true });
}

interface PackedManifest {
  name: string;
  bin?: string | Record<string, string>;
  dependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
}

function shippedScripts(dir: string): string[] {
  const found: string[] = [];
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) found.push(...shippedScripts(p));
    else if (/\.(m|c)?js$|\.d\.(m|c)?ts$/.test(e)) found.push(p); // declarations count: a type-only import needs the dependency for the consumer's types
  }
  return found;
}

/** The package a bare specifier names (`@scope/name/sub` → `@scope/name`), or undefined for relative and built-in ones. */
function packageOf(spec: string): string | undefined {
  if (/^(\.|\/|node:|file:|data:)/.test(spec) || builtinModules.includes(spec.split("/")[0] ?? "")) return undefined;
  const parts = spec.split("/");
  return spec.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0];
}

/** Every imported package is a dependency, and every dependency is imported. */
function checkImports(pkg: string): string[] {
  const m = JSON.parse(readFileSync(join(pkg, "package.json"), "utf8")) as PackedManifest;
  const declared = new Set(Object.keys({ ...m.dependencies, ...m.peerDependencies, ...m.optionalDependencies }));
  const used = new Set<string>();
  const out: string[] = [];
  const specifiers = /(?:\bfrom\s*|\bimport\s*\(?\s*|\brequire\s*\(\s*)["']([^"'\n]+)["']/g;
  for (const file of shippedScripts(pkg)) {
    for (const [, spec] of readFileSync(file, "utf8").matchAll(specifiers)) {
      const name = packageOf(spec ?? "");
      if (name === undefined || name === m.name) continue;
      used.add(name);
      if (!declared.has(name)) out.push(`${file.slice(pkg.length + 1)} imports ${name}, which is not in dependencies`);
    }
  }
  for (const d of declared) if (!used.has(d)) out.push(`dependency ${d} is imported by no shipped file (only runtime dependencies ship)`);
  return out;
}

/** Shipped `dist/X.js` / `dist/X.d.ts` whose `src/X.ts` is gone: left behind by an earlier build. */
function checkStale(files: string[]): string[] {
  const stale = new Set<string>();
  for (const f of files) {
    const m = /^package\/dist\/(.+?)(\.d\.ts|\.js)(\.map)?$/.exec(f);
    const stem = m?.[1];
    if (stem !== undefined && ![".ts", ".mts", ".tsx"].some((ext) => existsSync(join(dir, "src", stem + ext)))) stale.add(stem);
  }
  return [...stale].map((stem) => `dist/${stem}.js has no source src/${stem}.ts: stale build output (remove dist/ and rebuild)`);
}

/** Each bin is a shipped file that Node runs: `#!/usr/bin/env node`. */
function checkBins(pkg: string): string[] {
  const m = JSON.parse(readFileSync(join(pkg, "package.json"), "utf8")) as PackedManifest;
  const bins = typeof m.bin === "string" ? { [m.name]: m.bin } : (m.bin ?? {});
  const out: string[] = [];
  for (const [name, path] of Object.entries(bins)) {
    const file = join(pkg, path);
    if (!existsSync(file)) out.push(`bin ${name}: ${path} is not in the tarball`);
    else if (!readFileSync(file, "utf8").startsWith("#!/usr/bin/env node\n")) out.push(`bin ${name}: ${path} does not start with #!/usr/bin/env node`);
  }
  return out;
}

for (const p of problems) console.log(p);
console.log(problems.length === 0 ? `pack-check ${dir}: clean` : `pack-check ${dir}: ${problems.length} problem(s)`);
process.exit(problems.length === 0 ? 0 : 1);
