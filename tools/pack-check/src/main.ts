/**
 * pack-check: packs one public package exactly as `bun publish` would (`bun pm pack`), then checks
 * the tarball: publint (strict), `attw` with the esm-only profile, no `workspace:` ranges left in the
 * packed manifest, and no test files shipped.
 *
 * Usage: `bun tools/pack-check/src/main.ts <package-dir>`. Exit 1 on any problem.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
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
} catch (e) {
  problems.push(String(e));
} finally {
  rmSync(out, { recursive: true, force: true });
}

for (const p of problems) console.log(p);
console.log(problems.length === 0 ? `pack-check ${dir}: clean` : `pack-check ${dir}: ${problems.length} problem(s)`);
process.exit(problems.length === 0 ? 0 : 1);
