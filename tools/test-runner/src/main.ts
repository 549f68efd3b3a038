/**
 * `bun run test`: every gate of the repository, in order, with one final line
 * `N passed, N failed`. Test cases count one each (Bun and Node legs separately); every other gate
 * (build, typecheck, lint, docs, pack-check) counts as one check.
 *
 * Options: `--only=<pkg,...>` limits the test legs to some packages; `--no-node` skips the Node leg;
 * `--quick` skips docs and pack-check. CI uses none of them.
 */
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, rmSync, statSync } from "node:fs";
import { basename, dirname, join, relative } from "node:path";

const root = join(import.meta.dir, "..", "..", "..");
const args = process.argv.slice(2);
const only = args
  .find((a) => a.startsWith("--only="))
  ?.slice("--only=".length)
  .split(",");
const noNode = args.includes("--no-node");
const quick = args.includes("--quick");

let passed = 0;
let failed = 0;
const failures: string[] = [];
/** The failing cases of each failed test leg, printed again at the end, where a cut log still shows them. */
const digests: string[] = [];

/** Per-test deadline of both runners; a test may set a shorter one, never a longer one. */
const TEST_TIMEOUT_MS = 120_000;
/**
 * A whole test leg (one package under Bun, one file under Node) is killed after this long, with
 * everything it started: coreutils `timeout` puts the leg in its own process group and signals the
 * group, so a stray peer cannot keep the runner waiting on its pipes.
 */
const LEG_TIMEOUT_S = 900;

function run(cmd: string, argv: string[], cwd: string, env: Record<string, string> = {}) {
  const r = spawnSync(cmd, argv, { cwd, encoding: "utf8", env: { ...process.env, ...env }, maxBuffer: 256 * 1024 * 1024 });
  const out = `${r.stdout ?? ""}${r.stderr ?? ""}`;
  return { status: r.status ?? (r.signal ? 128 : 1), out, signal: r.signal };
}

/** `run` under a group-wide deadline of LEG_TIMEOUT_S; says so in the output when it fired. */
function runLeg(cmd: string, argv: string[], cwd: string) {
  const r = run("timeout", ["-k", "10", String(LEG_TIMEOUT_S), cmd, ...argv], cwd);
  if (r.status === 124 || r.status === 137) r.out += `\n[test-runner] killed after ${LEG_TIMEOUT_S} s with everything it started\n`;
  return r;
}

function gate(name: string, cmd: string, argv: string[], cwd = root): boolean {
  const t0 = performance.now();
  const r = run(cmd, argv, cwd);
  const ms = Math.round(performance.now() - t0);
  if (r.status === 0) {
    passed++;
    console.log(`ok   ${name} (${ms} ms)`);
    return true;
  }
  failed++;
  failures.push(name);
  console.log(`FAIL ${name} (${ms} ms)\n${indent(r.out.slice(-20000))}`);
  return false;
}

/**
 * The failing cases of a test run with their assertion text — Bun prints it above its `(fail)`
 * line, node:test's TAP below its `not ok` line — kept short so that a truncated CI log still says
 * what failed and why.
 */
function digest(out: string): string {
  const lines = out.split("\n");
  const parts: string[] = [];
  lines.forEach((l, i) => {
    const t = l.trim();
    if (t.startsWith("(fail)")) parts.push([...lines.slice(Math.max(0, i - 12), i), l].join("\n"));
    else if (t.startsWith("not ok "))
      parts.push(
        lines
          .slice(i, i + 24)
          .filter((x) => !/^\s+at /.test(x))
          .join("\n"),
      );
  });
  const text = parts.join("\n---\n");
  return text.length > 6000 ? `${text.slice(0, 6000)}\n[digest cut]` : text;
}

function indent(s: string): string {
  return s
    .split("\n")
    .map((l) => `     ${l}`)
    .join("\n");
}

function workspaces(): string[] {
  const dirs: string[] = [];
  for (const top of ["packages", "apps", "tools"]) {
    const base = join(root, top);
    if (!existsSync(base)) continue;
    for (const d of readdirSync(base).sort()) {
      const p = join(base, d);
      if (existsSync(join(p, "package.json"))) dirs.push(p);
    }
  }
  return dirs;
}

function testFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d)) {
      if (e === "node_modules" || e === "dist" || e.startsWith(".")) continue;
      const p = join(d, e);
      if (statSync(p).isDirectory()) walk(p);
      else if (e.endsWith(".test.ts")) out.push(p);
    }
  };
  walk(dir);
  return out.sort();
}

function count(out: string, re: RegExp): number {
  let n = 0;
  for (const m of out.matchAll(re)) n += Number(m[1]);
  return n;
}

const bunBin = process.execPath;

// 0. third-party peers (QEMU 7.2 and 11.1 from Debian, no root) into the user's cache; a quick
// no-op once fetched. When this fails, the tests that need a peer fail at once saying what to run.
gate("peers (tools/peers/fetch.sh: QEMU 7.2 and 11.1, DPDK 22.11 from Debian into the user's cache)", "sh", [join(root, "tools/peers/fetch.sh")]);

// 1. build + typecheck of sources (tsc -b follows project references).
gate("build (tsc -b)", join(root, "node_modules/.bin/tsc"), ["-b"]);

const dirs = workspaces();
// 2. typecheck including tests.
for (const d of dirs) {
  if (existsSync(join(d, "tsconfig.test.json"))) {
    gate(`typecheck ${relative(root, d)}`, join(root, "node_modules/.bin/tsc"), ["-p", "tsconfig.test.json"], d);
  }
}
// 3. lint (dependency direction, koffi confinement, no focused/skipped tests).
gate("lint", bunBin, [join(root, "tools/lint/src/main.ts")]);
// 3b. Biome: the formatter and the general linter, over the whole repository (biome.json).
gate("biome check (format and lint)", join(root, "node_modules/.bin/biome"), ["check", "."]);

// 4. tests under Bun, then under Node, per workspace.
for (const d of dirs) {
  const name = relative(root, d);
  if (only && !only.some((o) => name.endsWith(o))) continue;
  const files = testFiles(d);
  if (files.length === 0) continue;
  const t0 = performance.now();
  // bunfig.toml is read from the working directory only, so pass the repository's per-test timeout here.
  const r = runLeg(bunBin, ["test", "--timeout", String(TEST_TIMEOUT_MS), ...files.map((f) => `./${relative(d, f)}`)], d);
  const p = count(r.out, /^\s*(\d+) pass$/gm);
  const f = count(r.out, /^\s*(\d+) fail$/gm);
  const ok = r.status === 0 && f === 0 && p > 0;
  passed += p;
  failed += f;
  if (!ok && f === 0) failed++; // crashed runner or no tests counted
  if (!ok) failures.push(`bun test ${name}`);
  console.log(`${ok ? "ok  " : "FAIL"} bun  ${name}: ${p} passed, ${f} failed (${Math.round(performance.now() - t0)} ms)`);
  if (!ok) console.log(indent(r.out.slice(-20000)));
  if (!ok) digests.push(`bun ${name}:\n${indent(digest(r.out))}`);

  if (noNode) continue;
  for (const file of files) {
    const bundle = join(dirname(file), `.${basename(file, ".ts")}.node.mjs`);
    const b = run(bunBin, ["build", file, "--target=node", "--packages=external", "--outfile", bundle], d);
    if (b.status !== 0) {
      failed++;
      failures.push(`node bundle ${relative(root, file)}`);
      console.log(`FAIL node bundle ${relative(root, file)}\n${indent(b.out)}`);
      continue;
    }
    const t1 = performance.now();
    const n = runLeg("node", ["--test", `--test-timeout=${TEST_TIMEOUT_MS}`, "--test-reporter=tap", bundle], dirname(file));
    rmSync(bundle, { force: true });
    const np = count(n.out, /^# pass (\d+)$/gm);
    const nf = count(n.out, /^# fail (\d+)$/gm) + count(n.out, /^# cancelled (\d+)$/gm);
    const nok = n.status === 0 && nf === 0 && np > 0;
    passed += np;
    failed += nf;
    if (!nok && nf === 0) failed++;
    if (!nok) failures.push(`node ${relative(root, file)}`);
    console.log(`${nok ? "ok  " : "FAIL"} node ${relative(root, file)}: ${np} passed, ${nf} failed (${Math.round(performance.now() - t1)} ms)`);
    if (!nok) console.log(indent(n.out.slice(-20000)));
    if (!nok) digests.push(`node ${relative(root, file)}:\n${indent(digest(n.out))}`);
  }
}

if (!quick) {
  // 5. API docs: typedoc with notDocumented and warnings as errors.
  gate("docs (typedoc, warnings are errors)", join(root, "node_modules/.bin/typedoc"), []);
  // 6. pack-check of every public package.
  for (const d of dirs) {
    if (!d.includes("/packages/") && !d.includes("/apps/")) continue;
    gate(`pack-check ${relative(root, d)}`, bunBin, [join(root, "tools/pack-check/src/main.ts"), d]);
  }
}

if (digests.length > 0) console.log(`\nfailing cases:\n${digests.join("\n")}`);
if (failures.length > 0) console.log(`\nfailed: ${failures.join("; ")}`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
