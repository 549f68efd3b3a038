/**
 * The release, rehearsed for real in a throwaway copy of the repository (the working tree is never
 * touched): a local npm registry (Verdaccio, 127.0.0.1, no uplinks, storage in a temp dir) gets
 * the packages of `changeset version` + `tsc -b` + `tools/release/src/publish.ts` (`changeset
 * publish`); fresh projects outside the workspace install @vhostkit/frontend and @vhostkit/backend
 * with npm and with bun and probe the repository's vhostkit-gpu and a back-end of their own. Then a
 * protocol update (a patch changeset changing the draft SHMEM dialect) is versioned and published:
 * a consumer pinned to the first version (0.1.0 until the packages are released for real) keeps the
 * old dialect, one on `^` gets the new one.
 *
 * The steps are sequential tests sharing one deadline; each spawned process is killed at the end.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createConsumer, installedVersion, lastJson } from "./helpers/consumer.js";
import { Deadline, LongRunning, run } from "./helpers/processes.js";
import { registryVersions, thirdPartyDependencies } from "./helpers/registry.js";
import { commitAll, copyWorkspace, gitEnv, tags } from "./helpers/workspace-copy.js";
import { workspacePackages } from "../src/pin-workspace-ranges.js";

const DEADLINE_MS = 180_000;
const root = fileURLToPath(new URL("../../..", import.meta.url));
const bin = (name: string): string => join(root, "node_modules", ".bin", name);
const PUBLIC = workspacePackages(root)
  .filter((p) => p.public)
  .map((p) => p.name);
/** The version `changeset version` gives the pending changesets (0.1.0 while the packages are unreleased). */
let released = "";
/** `released` with its patch number bumped: the protocol update's version. */
let patched = "";

/** The rehearsal's protocol update, applied to the copy only: the draft dialect's SHMEM bit moves from 20 to 21. */
const DRAFT_BEFORE = /(export const DRAFT: Dialect = \{ \.\.\.UPSTREAM, name: "draft", shmemFeature: 1n << )20n( \};)/;
const UPDATE_CHANGESET = `---
"@vhostkit/wire": patch
---

Draft SHMEM dialect: the SHMEM protocol feature is bit 21 (release rehearsal, not a real change).
`;

let tmp = "";
let copy = "";
let registryUrl = "";
let deadline: Deadline;
let registry: LongRunning | undefined;
let gpu: LongRunning | undefined;
let gpuDraft: LongRunning | undefined;
let gpuSocket = "";
let gpuDraftSocket = "";
let gitEnvironment: NodeJS.ProcessEnv = {};
/** Steps done so far: a step refuses to run after a failed one, with a message that says so. */
let stepsDone = 0;

/** Environment of every npm, bun and changeset command: nothing from the user's configuration or caches. */
function toolEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(gitEnvironment)) if (!/^(npm_config_|npm_package_|bun_install|BUN_INSTALL)/i.test(k)) env[k] = v;
  return {
    ...env,
    npm_config_userconfig: join(tmp, "npmrc"),
    npm_config_registry: registryUrl,
    npm_config_cache: join(tmp, "npm-cache"),
    npm_config_audit: "false",
    npm_config_fund: "false",
    npm_config_update_notifier: "false",
    npm_config_loglevel: "warn",
    NO_COLOR: "1",
  };
}

function step(n: number): void {
  assert.equal(stepsDone, n - 1, `step ${stepsDone + 1} of the rehearsal failed; step ${n} needs it`);
}

function readJson<T>(file: string): T {
  return JSON.parse(readFileSync(file, "utf8")) as T;
}

function versionOf(dir: string, name: string): string {
  return readJson<{ version: string }>(join(dir, "packages", name.slice("@vhostkit/".length), "package.json")).version;
}

/** `changeset version` then a commit, as a release PR would. */
async function versionPackages(message: string): Promise<void> {
  await run(bin("changeset"), ["version"], { cwd: copy, env: toolEnv(), deadline });
  commitAll(copy, message, gitEnvironment);
}

/** `tsc -b` of the public packages, then `tools/release/src/publish.ts` (`changeset publish`) of the copy. */
async function buildAndPublish(version: string): Promise<string> {
  await run(bin("tsc"), ["-b", "packages/frontend", "packages/backend"], { cwd: copy, env: toolEnv(), deadline });
  const r = await run(bin("bun"), [join(copy, "tools", "release", "src", "publish.ts")], { cwd: copy, env: toolEnv(), deadline });
  for (const name of PUBLIC) {
    const published = await registryVersions(registryUrl, name);
    assert.ok(version in published.versions, `${name}@${version} is on the registry:\n${r.output}`);
    assert.equal(published.tags["latest"], version, `${name}: latest is ${version}`);
    for (const [dep, range] of Object.entries(published.versions[version]?.dependencies ?? {})) {
      if (dep.startsWith("@vhostkit/")) assert.equal(range, version, `${name}@${version} depends on ${dep} at exactly ${version}, not "${range}"`);
    }
  }
  const tagged = tags(copy, gitEnvironment);
  for (const name of PUBLIC) assert.ok(tagged.includes(`${name}@${version}`), `git tag ${name}@${version} in ${tagged.join(", ")}`);
  const dirty = await run("git", ["status", "--porcelain", "--", "packages"], { cwd: copy, env: gitEnvironment, deadline });
  assert.equal(dirty.output, "", "publish.ts put the manifests back (no pinned ranges left in the tree)");
  return r.output;
}

/**
 * `npm install` or `bun install` in a consumer project. Each bun install gets a cache of its own,
 * like a fresh machine: bun keeps registry manifests for a while and would not see a version
 * published a few seconds ago.
 */
async function install(manager: "npm" | "bun", consumer: string): Promise<void> {
  if (manager === "npm") await run("npm", ["install"], { cwd: consumer, env: toolEnv(), deadline });
  else await run(bin("bun"), ["install"], { cwd: consumer, env: { ...toolEnv(), BUN_INSTALL_CACHE_DIR: `${consumer}.bun-cache` }, deadline });
}

type Shmem = { shmid: number; size: string }[];

/** Runs a probe script of a consumer with `runtime`; returns its JSON answer. */
async function probe<T>(runtime: "node" | "bun", consumer: string, args: readonly string[]): Promise<T> {
  const r = await run(runtime === "node" ? "node" : bin("bun"), args, { cwd: consumer, env: toolEnv(), deadline });
  return lastJson<T>(r.output);
}

/** The first release installed in a fresh project (`npm install` or `bun install`), then probed. */
async function firstReleaseConsumer(manager: "npm" | "bun"): Promise<void> {
  const consumer = join(tmp, `consumer-${manager}`);
  createConsumer(consumer, { "@vhostkit/frontend": released, "@vhostkit/backend": released }, registryUrl);
  await install(manager, consumer);
  for (const name of PUBLIC) assert.equal(installedVersion(consumer, name), released, `${name} installed by ${manager}`);
  const listening = await gpu!.event("listening", deadline);
  const expected: Shmem = [{ shmid: listening["shmid"] as number, size: listening["shmSize"] as string }];
  for (const runtime of ["node", "bun"] as const) {
    assert.deepEqual(await probe<Shmem>(runtime, consumer, ["probe-shmem.mjs", gpuSocket]), expected, `${runtime} probe of vhostkit-gpu (${manager} install)`);
    assert.deepEqual(await probe(runtime, consumer, ["own-backend.mjs"]), { queueNum: 1, shmem: [{ shmid: 3, size: "0x200000" }] }, `${runtime}: own back-end on the installed @vhostkit/backend (${manager} install)`);
  }
}

describe("release rehearsal: changeset version, changeset publish to a local registry, npm and bun consumers, a protocol update", () => {
  before(async () => {
    deadline = new Deadline(DEADLINE_MS);
    tmp = mkdtempSync(join(tmpdir(), "vhostkit-release-"));
    mkdirSync(join(tmp, "home"));
    gitEnvironment = gitEnv(join(tmp, "home"));
    copy = join(tmp, "repo");
    copyWorkspace(root, copy, gitEnvironment);

    const seeds = thirdPartyDependencies(root);
    registry = new LongRunning("node", [join(root, "tools", "release", "src", "registry.mjs"), join(tmp, "registry"), ...seeds.map((s) => s.name)], { cwd: tmp, env: gitEnvironment });
    registryUrl = (await registry.event("listening", deadline))["url"] as string;
    const host = registryUrl.replace(/^http:/, "");
    writeFileSync(join(tmp, "npmrc"), `registry=${registryUrl}\n${host}:_authToken=release-rehearsal\n`);
    for (const s of seeds) await run("npm", ["publish", s.dir, "--tag", "latest"], { cwd: tmp, env: toolEnv(), deadline });

    const gpuBin = join(root, "apps", "gpu-backend", "bin", "vhostkit-gpu.mjs");
    gpuSocket = join(tmp, "gpu.sock");
    gpuDraftSocket = join(tmp, "gpu-draft.sock");
    gpu = new LongRunning(bin("bun"), [gpuBin, "--socket", gpuSocket, "--shm-size", "16M"], { cwd: tmp });
    gpuDraft = new LongRunning(bin("bun"), [gpuBin, "--socket", gpuDraftSocket, "--shm-size", "8M", "--dialect", "draft"], { cwd: tmp });
  });

  after(async () => {
    await Promise.all([gpu?.stop(), gpuDraft?.stop(), registry?.stop()]);
    if (tmp !== "") rmSync(tmp, { recursive: true, force: true });
  });

  test("changeset version turns the pending changesets into one version for the fixed group and a CHANGELOG entry per package", { timeout: 120_000 }, async () => {
    step(1);
    const base = versionOf(copy, "@vhostkit/wire");
    const pending = readdirSync(join(copy, ".changeset")).filter((f) => f.endsWith(".md") && f !== "README.md");
    await versionPackages("Version packages");
    released = versionOf(copy, "@vhostkit/wire");
    assert.doesNotMatch(released, /^0\.0\./, `a caret range on ${released} would not accept the patch release this rehearsal publishes next`);
    patched = released.replace(/\d+$/, (patch) => String(Number(patch) + 1));
    if (base === "0.0.0") assert.equal(released, "0.1.0", "the initial-release changesets (minor) make the first release 0.1.0");
    if (pending.length === 0) assert.equal(released, base, "no changeset pending: nothing to version, the current version is published");
    else assert.notEqual(released, base, `${pending.length} changeset(s) pending: a new version`);
    for (const name of PUBLIC) {
      assert.equal(versionOf(copy, name), released, `${name}: one version for the fixed group`);
      if (pending.length === 0) continue;
      const changelog = readFileSync(join(copy, "packages", name.slice(10), "CHANGELOG.md"), "utf8");
      assert.match(changelog, new RegExp(`^# ${name}\\n\\n## ${released.replace(/\./g, "\\.")}\\n\\n### (Major|Minor|Patch) Changes\\n`), `${name} CHANGELOG`);
      if (base === "0.0.0") assert.match(changelog, /### Minor Changes\n\n- [0-9a-f]+: First release/, `${name}: its initial-release changeset`);
    }
    stepsDone = 1;
  });

  test("tsc -b and tools/release/src/publish.ts publish every public package with exact internal ranges and tag it", { timeout: 120_000 }, async () => {
    step(2);
    await buildAndPublish(released);
    stepsDone = 2;
  });

  test("npm: a fresh project installs that release of @vhostkit/frontend and @vhostkit/backend and probes vhostkit-gpu and its own back-end", { timeout: 120_000 }, async () => {
    step(3);
    await firstReleaseConsumer("npm");
    stepsDone = 3;
  });

  test("bun: a fresh project installs the same from the local registry and probes the same", { timeout: 120_000 }, async () => {
    step(4);
    await firstReleaseConsumer("bun");
    stepsDone = 4;
  });

  test("protocol update: a patch changeset changing the draft dialect is versioned (a patch release of every package of the fixed group) and published", { timeout: 120_000 }, async () => {
    step(5);
    const dialectFile = join(copy, "packages", "wire", "src", "dialect.ts");
    const source = readFileSync(dialectFile, "utf8");
    assert.match(source, DRAFT_BEFORE, "the rehearsal's protocol update edits DRAFT in packages/wire/src/dialect.ts: update DRAFT_BEFORE in this test to the current source");
    writeFileSync(dialectFile, source.replace(DRAFT_BEFORE, (_, head: string, tail: string) => `${head}21n${tail}`));
    writeFileSync(join(copy, ".changeset", "draft-shmem-bit.md"), UPDATE_CHANGESET);
    commitAll(copy, "wire: draft dialect SHMEM bit 21 (rehearsal)", gitEnvironment);
    await versionPackages("Version packages (protocol update)");
    for (const name of PUBLIC) assert.equal(versionOf(copy, name), patched, name);
    const wireLog = readFileSync(join(copy, "packages", "wire", "CHANGELOG.md"), "utf8");
    const heading = (v: string): string => `## ${v.replace(/\./g, "\\.")}\\n\\n`;
    assert.match(wireLog, new RegExp(`^# @vhostkit/wire\\n\\n${heading(patched)}### Patch Changes\\n\\n- [0-9a-f]+: Draft SHMEM dialect: the SHMEM protocol feature is bit 21`));
    const frontendLog = readFileSync(join(copy, "packages", "frontend", "CHANGELOG.md"), "utf8");
    assert.match(frontendLog, new RegExp(`^# @vhostkit/frontend\\n\\n${heading(patched)}### Patch Changes\\n\\n- Updated dependencies`));
    await buildAndPublish(patched);
    for (const name of PUBLIC) assert.ok(released in (await registryVersions(registryUrl, name)).versions, `${name}@${released} still published`);
    stepsDone = 5;
  });

  test("a consumer pinned to the first version keeps the old dialect; one on ^ gets the new one", { timeout: 120_000 }, async () => {
    step(6);
    const names = ["@vhostkit/wire", "@vhostkit/frontend", "@vhostkit/backend"];
    const listening = await gpuDraft!.event("listening", deadline);
    const draftRegion: Shmem = [{ shmid: listening["shmid"] as number, size: listening["shmSize"] as string }];
    const cases = [
      { range: released, expected: { wire: released, frontend: released, backend: released, draftShmemBit: 20, bit20: ["SHMEM"], bit21: ["GPA_ADDRESSES"] }, shmem: draftRegion },
      // Against the repository's vhostkit-gpu in the (old) draft dialect, the updated front-end looks for SHMEM at bit 21 and finds none.
      { range: `^${released}`, expected: { wire: patched, frontend: patched, backend: patched, draftShmemBit: 21, bit20: ["GET_VRING_BASE_INFLIGHT"], bit21: ["SHMEM"] }, shmem: [] },
    ];
    const consumers = cases.flatMap((c) => (["npm", "bun"] as const).map((manager) => ({ ...c, manager, dir: join(tmp, `consumer-${manager}-${c.range.startsWith("^") ? "caret" : "pinned"}`) })));
    for (const c of consumers) createConsumer(c.dir, Object.fromEntries(names.map((n) => [n, c.range])), registryUrl);
    await Promise.all(consumers.map((c) => install(c.manager, c.dir)));
    for (const c of consumers) {
      const runtime = c.manager === "npm" ? "node" : "bun";
      assert.deepEqual(await probe(runtime, c.dir, ["dialect.mjs"]), c.expected, `"${c.range}" installed by ${c.manager}: what @vhostkit/wire says about the draft dialect`);
      assert.deepEqual(await probe<Shmem>(runtime, c.dir, ["probe-shmem.mjs", gpuDraftSocket, "draft"]), c.shmem, `"${c.range}" installed by ${c.manager}: shared memory of vhostkit-gpu --dialect draft`);
    }
    stepsDone = 6;
  });
});
