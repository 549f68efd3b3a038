/**
 * The release, rehearsed for real in a throwaway copy of the repository (the working tree is never
 * touched): a local npm registry (Verdaccio, 127.0.0.1, no uplinks, storage in a temp dir) gets
 * the packages of `changeset version` + `tsc -b` + `tools/release/src/publish.ts` (`changeset
 * publish`); fresh projects outside the workspace install @vhostkit/frontend and @vhostkit/backend
 * with npm and with bun and probe the repository's vhostkit-gpu and a back-end of their own. In a
 * fresh directory, the root README's quick start runs as written: `npx @vhostkit/device probe
 * --json` against `npx -p @vhostkit/gpu-backend vhostkit-gpu` from the registry under Node, the same
 * with `bunx --bun` under Bun, and the standalone executables built from the release commit with
 * nothing but `sh` on PATH.
 * Then a protocol update (a patch changeset changing the draft SHMEM dialect) is versioned and
 * published: a consumer pinned to the first version (0.1.0 until the packages are released for
 * real) keeps the old dialect, one on `^` gets the new one.
 *
 * The steps are sequential tests sharing one deadline; each spawned process is killed at the end.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { createConsumer, installedVersion, lastJson } from "./helpers/consumer.js";
import { Deadline, LongRunning, run } from "./helpers/processes.js";
import { registryVersions, thirdPartyDependencies } from "./helpers/registry.js";
import { probeCompiled, shOnlyPath } from "./helpers/standalone.js";
import { commitAll, copyWorkspace, gitEnv, tags } from "./helpers/workspace-copy.js";
import { workspacePackages } from "../src/pin-workspace-ranges.js";

const DEADLINE_MS = 300_000;
const root = fileURLToPath(new URL("../../..", import.meta.url));
const bin = (name: string): string => join(root, "node_modules", ".bin", name);
/** Directory of each public package (the libraries under packages/, the apps under apps/), relative to the repository. */
const PUBLIC_DIRS = new Map(
  workspacePackages(root)
    .filter((p) => p.public)
    .map((p) => [p.name, relative(root, p.dir)]),
);
const PUBLIC = [...PUBLIC_DIRS.keys()];
/** The libraries: what the consumer projects install. */
const LIBRARIES = PUBLIC.filter((name) => PUBLIC_DIRS.get(name)?.startsWith("packages/"));
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
  return readJson<{ version: string }>(join(dir, PUBLIC_DIRS.get(name) ?? "", "package.json")).version;
}

/** `changeset version` then a commit, as a release PR would. */
async function versionPackages(message: string): Promise<void> {
  await run(bin("changeset"), ["version"], { cwd: copy, env: toolEnv(), deadline });
  commitAll(copy, message, gitEnvironment);
}

/** `tsc -b` of the public packages, then `tools/release/src/publish.ts` (`changeset publish`) of the copy. */
async function buildAndPublish(version: string): Promise<string> {
  await run(bin("tsc"), ["-b", "packages/frontend", "packages/backend", "apps/device", "apps/gpu-backend"], { cwd: copy, env: toolEnv(), deadline });
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
  const dirty = await run("git", ["status", "--porcelain", "--", "packages", "apps"], { cwd: copy, env: gitEnvironment, deadline });
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
  for (const name of LIBRARIES) assert.equal(installedVersion(consumer, name), released, `${name} installed by ${manager}`);
  const listening = await gpu!.event("listening", deadline);
  const expected: Shmem = [{ shmid: listening["shmid"] as number, size: listening["shmSize"] as string }];
  for (const runtime of ["node", "bun"] as const) {
    assert.deepEqual(await probe<Shmem>(runtime, consumer, ["probe-shmem.mjs", gpuSocket]), expected, `${runtime} probe of vhostkit-gpu (${manager} install)`);
    assert.deepEqual(
      await probe(runtime, consumer, ["own-backend.mjs"]),
      { queueNum: 1, shmem: [{ shmid: 3, size: "0x200000" }] },
      `${runtime}: own back-end on the installed @vhostkit/backend (${manager} install)`,
    );
  }
}

/** A user's shell in a fresh directory: the tool environment without any node_modules/.bin on PATH. */
function userEnv(): NodeJS.ProcessEnv {
  const env = toolEnv();
  return {
    ...env,
    PATH: (env["PATH"] ?? "")
      .split(delimiter)
      .filter((d) => d !== "" && !d.includes("node_modules"))
      .join(delimiter),
  };
}

/** One command of the README's first `sh` block: its words, and whether it runs in the background (`&`: a back-end). */
interface QuickStartCommand {
  readonly words: readonly string[];
  readonly background: boolean;
}

/** The README's first `sh` block (the quick start), comment lines dropped. */
function readmeQuickStart(readme: string): QuickStartCommand[] {
  const block = /```sh\n([\s\S]*?)```/.exec(readme)?.[1] ?? "";
  return block
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"))
    .map((l) => ({ background: l.endsWith("&"), words: l.replace(/&$/, "").trim().split(/\s+/) }));
}

/**
 * A quick-start command as the rehearsal runs it: `npx` with `--yes` (no prompt) and `--registry`,
 * `bunx` as `bun x` with `--registry`, and the socket in the temp dir. bunx installs into a
 * directory under TMPDIR and a cache of its own, both in the rehearsal's temp dir: a fresh machine.
 */
function fromRegistry(words: readonly string[], socket: string): { cmd: string; args: string[]; env: NodeJS.ProcessEnv } {
  const rest = words.slice(1).map((w) => (w === "/tmp/gpu.sock" ? socket : w));
  if (words[0] === "npx") return { cmd: "npx", args: ["--yes", "--registry", registryUrl, ...rest], env: userEnv() };
  assert.equal(words[0], "bunx", `a quick-start command runs with npx or bunx: ${words.join(" ")}`);
  const bunxTmp = join(tmp, "bunx-tmp");
  mkdirSync(bunxTmp, { recursive: true });
  return {
    cmd: bin("bun"),
    args: ["x", "--registry", registryUrl, ...rest],
    env: { ...userEnv(), TMPDIR: bunxTmp, BUN_INSTALL_CACHE_DIR: join(tmp, "bunx-cache") },
  };
}

/** The same command asking for `--version`: its words up to the command's own arguments (`probe`, `--socket`). */
function versionWords(words: readonly string[]): string[] {
  return [
    ...words.slice(
      0,
      words.findIndex((w) => w === "probe" || w === "--socket"),
    ),
    "--version",
  ];
}

/** `--version` of an app: its name and `version`, the dialects, and a runtime line matching `runtime`. */
function assertVersion(stdout: string, name: string, version: string, runtime: RegExp, how: string): void {
  const lines = stdout.trim().split("\n");
  assert.equal(lines[0], `${name} ${version}`, `${how}: ${stdout}`);
  assert.match(
    lines[1] ?? "",
    /^protocol dialects: upstream \(SHMEM bit 22\), rust-vmm-0\.16 \(SHMEM bit 21\), draft \(SHMEM bit 20\), crosvm-legacy \(SHMEM bit 31\)$/,
    how,
  );
  assert.match(lines[2] ?? "", runtime, how);
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
    registry = new LongRunning("node", [join(root, "tools", "release", "src", "registry.mjs"), join(tmp, "registry"), ...seeds.map((s) => s.name)], {
      cwd: tmp,
      env: gitEnvironment,
    });
    registryUrl = (await registry.event("listening", deadline))["url"] as string;
    const host = registryUrl.replace(/^http:/, "");
    writeFileSync(join(tmp, "npmrc"), `registry=${registryUrl}\n${host}:_authToken=release-rehearsal\n`);
    // As installed, already built: their own prepack scripts (fast-png's runs its dev tools) are not for us to run.
    for (const s of seeds) await run("npm", ["publish", s.dir, "--tag", "latest", "--ignore-scripts"], { cwd: tmp, env: toolEnv(), deadline });

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

  test("changeset version turns the pending changesets into one version for the fixed group and a CHANGELOG entry per package", {
    timeout: 120_000,
  }, async () => {
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
      const changelog = readFileSync(join(copy, PUBLIC_DIRS.get(name) ?? "", "CHANGELOG.md"), "utf8");
      assert.match(changelog, new RegExp(`^# ${name}\\n\\n## ${released.replace(/\./g, "\\.")}\\n\\n### (Major|Minor|Patch) Changes\\n`), `${name} CHANGELOG`);
      // Other pending changesets may come first in the section; the initial-release one must be there.
      const minor = changelog.split("### Minor Changes\n\n")[1]?.split("\n### ")[0] ?? "";
      if (base === "0.0.0") assert.match(minor, /^- [0-9a-f]+: First release/m, `${name}: its initial-release changeset among the minor changes`);
    }
    stepsDone = 1;
  });

  test("tsc -b and tools/release/src/publish.ts publish every public package with exact internal ranges and tag it", { timeout: 120_000 }, async () => {
    step(2);
    await buildAndPublish(released);
    stepsDone = 2;
  });

  test("npm: a fresh project installs that release of @vhostkit/frontend and @vhostkit/backend and probes vhostkit-gpu and its own back-end", {
    timeout: 120_000,
  }, async () => {
    step(3);
    await firstReleaseConsumer("npm");
    stepsDone = 3;
  });

  test("bun: a fresh project installs the same from the local registry and probes the same", { timeout: 120_000 }, async () => {
    step(4);
    await firstReleaseConsumer("bun");
    stepsDone = 4;
  });

  test("the README's quick start in a fresh directory: npx (Node) and bunx --bun (Bun) run vhost-user-device probe --json from the registry against vhostkit-gpu from the registry; the release's standalone executables do the same with only sh on PATH", {
    timeout: 120_000,
  }, async () => {
    step(5);
    const fresh = join(tmp, "fresh");
    mkdirSync(fresh);
    const quickStart = readmeQuickStart(readFileSync(join(copy, "README.md"), "utf8"));
    assert.deepEqual(
      quickStart.map((c) => [c.words[0], c.background]),
      [
        ["npx", true],
        ["npx", false],
        ["bunx", true],
        ["bunx", false],
        ["./vhostkit-gpu-linux-x64", true],
        ["./vhost-user-device-linux-x64", false],
      ],
      "the README's first sh block: a back-end (&) and a probe with npx, with bunx, and with the standalone executables",
    );
    const probes = new Map<string, unknown>();
    for (const [i, runtime] of [
      [0, "node"],
      [2, "bun"],
    ] as const) {
      const [server, client] = [quickStart[i]?.words ?? [], quickStart[i + 1]?.words ?? []];
      const how = `${runtime}: ${client.join(" ")}`;
      const socket = join(fresh, `gpu-${runtime}.sock`);
      const gpuCommand = fromRegistry(server, socket);
      const gpu = new LongRunning(gpuCommand.cmd, gpuCommand.args, { cwd: fresh, env: gpuCommand.env });
      try {
        const listening = await gpu.event("listening", deadline);
        const output = async (words: readonly string[]): Promise<string> => {
          const c = fromRegistry(words, socket);
          return (await run(c.cmd, c.args, { cwd: fresh, env: c.env, deadline })).stdout;
        };
        const probe = JSON.parse(await output(client)) as Record<string, unknown>;
        assert.deepEqual(
          probe["shmem"],
          [{ shmid: listening["shmid"], size: listening["shmSize"] }],
          `${how}: the shared memory region vhostkit-gpu announced`,
        );
        probes.set(runtime, probe);
        const runtimeLine = runtime === "node" ? /^runtime: node v?\d+\./ : /^runtime: bun \d+\.\d+\.\d+$/;
        assertVersion(await output(versionWords(client)), "vhost-user-device", released, runtimeLine, `${how} --version`);
        assertVersion(await output(versionWords(server)), "vhostkit-gpu", released, runtimeLine, `${server.join(" ")} --version`);
      } finally {
        await gpu.stop();
      }
    }
    // The release artifacts, built from the release commit of the copy, run in the same directory.
    const binaries = join(tmp, "binaries");
    await run(bin("bun"), [join(copy, "tools", "release", "src", "build-binaries.ts"), "--target", "linux-x64", "--out", binaries], {
      cwd: copy,
      env: toolEnv(),
      deadline,
    });
    const socket = join(fresh, "gpu-standalone.sock");
    const local = (words: readonly string[]): string[] => words.map((w, j) => (j === 0 ? join(binaries, w) : w === "/tmp/gpu.sock" ? socket : w));
    const compiled = await probeCompiled(
      { gpu: local(quickStart[4]?.words ?? []), probe: local(quickStart[5]?.words ?? []) },
      fresh,
      shOnlyPath(join(tmp, "sh-only")),
      deadline,
    );
    probes.set("standalone", compiled.probe);
    const standalone = /^runtime: bun \d+\.\d+\.\d+, standalone executable$/;
    assertVersion(compiled.deviceVersion.join("\n"), "vhost-user-device", released, standalone, "vhost-user-device-linux-x64 --version");
    assertVersion(compiled.gpuVersion.join("\n"), "vhostkit-gpu", released, standalone, "vhostkit-gpu-linux-x64 --version");
    for (const [how, probe] of probes) assert.deepEqual(probe, probes.get("node"), `${how}: the same probe as npx's`);
    stepsDone = 5;
  });

  test("protocol update: a patch changeset changing the draft dialect is versioned (a patch release of every package of the fixed group) and published", {
    timeout: 120_000,
  }, async () => {
    step(6);
    const dialectFile = join(copy, "packages", "wire", "src", "dialect.ts");
    const source = readFileSync(dialectFile, "utf8");
    assert.match(
      source,
      DRAFT_BEFORE,
      "the rehearsal's protocol update edits DRAFT in packages/wire/src/dialect.ts: update DRAFT_BEFORE in this test to the current source",
    );
    writeFileSync(
      dialectFile,
      source.replace(DRAFT_BEFORE, (_, head: string, tail: string) => `${head}21n${tail}`),
    );
    writeFileSync(join(copy, ".changeset", "draft-shmem-bit.md"), UPDATE_CHANGESET);
    commitAll(copy, "wire: draft dialect SHMEM bit 21 (rehearsal)", gitEnvironment);
    await versionPackages("Version packages (protocol update)");
    for (const name of PUBLIC) assert.equal(versionOf(copy, name), patched, name);
    const wireLog = readFileSync(join(copy, "packages", "wire", "CHANGELOG.md"), "utf8");
    const heading = (v: string): string => `## ${v.replace(/\./g, "\\.")}\\n\\n`;
    assert.match(
      wireLog,
      new RegExp(`^# @vhostkit/wire\\n\\n${heading(patched)}### Patch Changes\\n\\n- [0-9a-f]+: Draft SHMEM dialect: the SHMEM protocol feature is bit 21`),
    );
    const frontendLog = readFileSync(join(copy, "packages", "frontend", "CHANGELOG.md"), "utf8");
    assert.match(frontendLog, new RegExp(`^# @vhostkit/frontend\\n\\n${heading(patched)}### Patch Changes\\n\\n- Updated dependencies`));
    await buildAndPublish(patched);
    for (const name of PUBLIC) assert.ok(released in (await registryVersions(registryUrl, name)).versions, `${name}@${released} still published`);
    stepsDone = 6;
  });

  test("a consumer pinned to the first version keeps the old dialect; one on ^ gets the new one", { timeout: 120_000 }, async () => {
    step(7);
    const names = ["@vhostkit/wire", "@vhostkit/frontend", "@vhostkit/backend"];
    const listening = await gpuDraft!.event("listening", deadline);
    const draftRegion: Shmem = [{ shmid: listening["shmid"] as number, size: listening["shmSize"] as string }];
    const cases = [
      {
        range: released,
        expected: { wire: released, frontend: released, backend: released, draftShmemBit: 20, bit20: ["SHMEM"], bit21: ["GPA_ADDRESSES"] },
        shmem: draftRegion,
      },
      // Against the repository's vhostkit-gpu in the (old) draft dialect, the updated front-end looks for SHMEM at bit 21 and finds none.
      {
        range: `^${released}`,
        expected: { wire: patched, frontend: patched, backend: patched, draftShmemBit: 21, bit20: ["GET_VRING_BASE_INFLIGHT"], bit21: ["SHMEM"] },
        shmem: [],
      },
    ];
    const consumers = cases.flatMap((c) =>
      (["npm", "bun"] as const).map((manager) => ({ ...c, manager, dir: join(tmp, `consumer-${manager}-${c.range.startsWith("^") ? "caret" : "pinned"}`) })),
    );
    for (const c of consumers) createConsumer(c.dir, Object.fromEntries(names.map((n) => [n, c.range])), registryUrl);
    await Promise.all(consumers.map((c) => install(c.manager, c.dir)));
    for (const c of consumers) {
      const runtime = c.manager === "npm" ? "node" : "bun";
      assert.deepEqual(
        await probe(runtime, c.dir, ["dialect.mjs"]),
        c.expected,
        `"${c.range}" installed by ${c.manager}: what @vhostkit/wire says about the draft dialect`,
      );
      assert.deepEqual(
        await probe<Shmem>(runtime, c.dir, ["probe-shmem.mjs", gpuDraftSocket, "draft"]),
        c.shmem,
        `"${c.range}" installed by ${c.manager}: shared memory of vhostkit-gpu --dialect draft`,
      );
    }
    stepsDone = 7;
  });
});
