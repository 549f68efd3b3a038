/**
 * Repository lint: the rules that keep the architecture honest.
 *
 * - Dependencies point one way (wire <- transport <- regions/virtqueue <- fallback <- backend/frontend
 *   <- apps); `tsconfig.json` references mirror `dependencies` exactly.
 * - koffi is imported only under `packages/<pkg>/src/sys/`.
 * - Library sources never call `process.exit` or `console.*`.
 * - Tests use `node:test` (so they run under Bun and Node) and leave no `.only`/`.skip`/`.todo`.
 *
 * Usage: `bun tools/lint/src/main.ts [dir]` (default: the whole repository). Exit 1 on any finding.
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";

const root = join(import.meta.dir, "..", "..", "..");
const allowed: Record<string, readonly string[]> = {
  wire: [],
  transport: ["wire"],
  regions: ["wire", "transport"],
  virtqueue: ["wire", "regions"],
  fallback: ["wire", "transport", "regions", "virtqueue"],
  frontend: ["wire", "transport", "regions", "virtqueue", "fallback"],
  backend: ["wire", "transport", "regions", "virtqueue", "fallback"],
};

const findings: string[] = [];
const scope = process.argv[2] ? join(process.cwd(), process.argv[2]) : root;

function walk(dir: string, out: string[] = []): string[] {
  for (const e of readdirSync(dir)) {
    if (e === "node_modules" || e === "dist" || e.startsWith(".")) continue;
    const p = join(dir, e);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (e.endsWith(".ts") || e.endsWith(".mjs")) out.push(p);
  }
  return out;
}

const pkgsDir = join(root, "packages");
for (const name of existsSync(pkgsDir) ? readdirSync(pkgsDir) : []) {
  const dir = join(pkgsDir, name);
  if (!dir.startsWith(scope) && !scope.startsWith(dir)) continue;
  const manifest = JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as { dependencies?: Record<string, string> };
  const deps = Object.keys(manifest.dependencies ?? {}).filter((d) => d.startsWith("@vhostkit/")).map((d) => d.slice(10)).sort();
  const ok = allowed[name];
  if (!ok) findings.push(`packages/${name}: not in the dependency graph of tools/lint (add it deliberately)`);
  for (const d of deps) if (ok && !ok.includes(d)) findings.push(`packages/${name} depends on @vhostkit/${d}: against the dependency direction`);
  const tsconfig = JSON.parse(readFileSync(join(dir, "tsconfig.json"), "utf8")) as { references?: { path: string }[] };
  const refs = (tsconfig.references ?? []).map((r) => r.path.replace("../", "")).sort();
  if (refs.join() !== deps.join()) findings.push(`packages/${name}: tsconfig references [${refs}] do not mirror dependencies [${deps}]`);
  if (!existsSync(join(dir, "src"))) continue;
  for (const file of walk(join(dir, "src"))) {
    const rel = relative(root, file);
    const text = readFileSync(file, "utf8");
    const isTest = file.endsWith(".test.ts");
    if (/from\s+["']koffi["']/.test(text) && !rel.includes("/src/sys/")) findings.push(`${rel}: imports koffi outside src/sys/`);
    if (!isTest && !rel.includes("/testing/") && /\bprocess\.exit\(/.test(text)) findings.push(`${rel}: process.exit in library code`);
    if (!isTest && /\bconsole\.(log|error|warn|info|debug)\(/.test(text)) findings.push(`${rel}: console output in library code`);
  }
}

for (const file of walk(scope)) {
  if (!file.endsWith(".test.ts")) continue;
  const rel = relative(root, file);
  const text = readFileSync(file, "utf8");
  if (/\b(test|it|describe)\.(only|skip|todo)\(/.test(text) || /\{\s*(skip|todo|only)\s*:/.test(text)) findings.push(`${rel}: focused, skipped or todo test`);
  if (/from\s+["']bun:test["']/.test(text)) findings.push(`${rel}: imports bun:test (use node:test so the file runs under Node too)`);
}

for (const f of findings) console.log(f);
console.log(findings.length === 0 ? "lint: clean" : `lint: ${findings.length} finding(s)`);
process.exit(findings.length === 0 ? 0 : 1);
