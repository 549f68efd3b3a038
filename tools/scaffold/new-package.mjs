// Creates a new public library under packages/ that passes lint, pack-check and docs at once.
// Run through new-package.sh: node tools/scaffold/new-package.mjs <root> <name> "<description>" [dep ...]
//
// What it writes, all relative to <root> (the repository, or a copy of it):
// - packages/<name>/package.json: the shared fields (scripts, engines, license, files, …) copied
//   from an existing library so that conventions stay in one place; name, description, version
//   (the `fixed` group's), repository directory, exports and @vhostkit dependencies set here;
// - packages/<name>/tsconfig.json (references mirror the dependencies) and tsconfig.test.json;
// - packages/<name>/src/index.ts (@packageDocumentation and one documented export),
//   packages/<name>/test/index.test.ts (node:test), packages/<name>/README.md;
// - a reference in the root tsconfig.json, the package in the `fixed` group of
//   .changeset/config.json, and its allowed dependencies in tools/lint/dependency-graph.json.
// Refuses (exit 2, nothing written) a bad or taken name and unknown dependencies.
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const [root, name, description, ...deps] = process.argv.slice(2);

/** @param {string} message */
function refuse(message) {
  console.error(`new-package: ${message}`);
  process.exit(2);
}

if (root === undefined || name === undefined || description === undefined) refuse('usage: new-package.sh <name> "<one-line description>" [dep ...]');
if (!/^[a-z][a-z0-9]*(-[a-z0-9]+)*$/.test(name)) refuse(`name "${name}" must be kebab-case (a-z, 0-9, single hyphens)`);
if (description.trim() === "" || description.includes("\n")) refuse("the description must be one non-empty line");
const dir = join(root, "packages", name);
if (existsSync(dir)) refuse(`packages/${name} already exists`);
for (const d of deps) if (!existsSync(join(root, "packages", d, "package.json"))) refuse(`dependency "${d}" is not a package under packages/`);
if (new Set(deps).size !== deps.length) refuse("a dependency is listed twice");

const graphPath = join(root, "tools", "lint", "dependency-graph.json");
const changesetPath = join(root, ".changeset", "config.json");
const rootTsconfigPath = join(root, "tsconfig.json");
/** @type {Record<string, unknown>} */
const graph = existsSync(graphPath) ? JSON.parse(readFileSync(graphPath, "utf8")) : {};
if (name in graph) refuse(`"${name}" is already in tools/lint/dependency-graph.json`);
const changeset = JSON.parse(readFileSync(changesetPath, "utf8"));
const rootTsconfig = JSON.parse(readFileSync(rootTsconfigPath, "utf8"));

// The libraries version together: the new one starts at the group's current version.
/** @type {string[]} */
const group = changeset.fixed?.[0] ?? [];
const libraries = readdirSync(join(root, "packages")).filter((p) => existsSync(join(root, "packages", p, "package.json")));
const templateName = group.map((n) => n.replace(/^@vhostkit\//, "")).find((n) => libraries.includes(n)) ?? libraries[0];
const template = templateName === undefined ? {} : JSON.parse(readFileSync(join(root, "packages", templateName, "package.json"), "utf8"));
const version = typeof template.version === "string" ? template.version : "0.0.0";

/**
 * The template's scripts, with mentions of the template package (e.g. the test runner's
 * `--only=packages/<template>`) turned into the new one; defaults when there is no template.
 * @param {Record<string, string> | undefined} scripts
 */
function scriptsFor(scripts) {
  if (scripts === undefined) {
    return {
      build: "tsc -b",
      typecheck: "tsc -p tsconfig.test.json",
      lint: "bun ../../tools/lint/src/main.ts .",
      test: `bun ../../tools/test-runner/src/main.ts --only=packages/${name} --quick`,
      "pack-check": "bun ../../tools/pack-check/src/main.ts .",
    };
  }
  return Object.fromEntries(Object.entries(scripts).map(([k, v]) => [k, v.split(`packages/${templateName}`).join(`packages/${name}`)]));
}

const manifest = {
  name: `@vhostkit/${name}`,
  version,
  description,
  license: template.license ?? "Apache-2.0",
  type: "module",
  sideEffects: false,
  engines: template.engines ?? { node: ">=20", bun: ">=1.1" },
  repository: { ...(template.repository ?? { type: "git", url: "git+https://github.com/vhostkit/vhostkit.git" }), directory: `packages/${name}` },
  exports: {
    ".": { types: "./dist/index.d.ts", default: "./dist/index.js" },
    "./package.json": "./package.json",
    "./internal/*": null,
  },
  main: "./dist/index.js",
  types: "./dist/index.d.ts",
  files: template.files ?? ["dist", "src", "!src/**/*.test.ts", "README.md"],
  scripts: scriptsFor(template.scripts),
  dependencies: Object.fromEntries(deps.map((d) => [`@vhostkit/${d}`, "workspace:*"])),
  publishConfig: template.publishConfig ?? { access: "public" },
};

const tsconfig = {
  extends: "../../tsconfig.base.json",
  compilerOptions: { rootDir: "src", outDir: "dist", tsBuildInfoFile: "dist/.tsbuildinfo" },
  include: ["src/**/*.ts"],
  exclude: ["src/**/*.test.ts"],
  references: deps.map((d) => ({ path: `../${d}` })),
};

const templateTestConfig = templateName === undefined ? undefined : join(root, "packages", templateName, "tsconfig.test.json");
const tsconfigTest =
  templateTestConfig !== undefined && existsSync(templateTestConfig)
    ? readFileSync(templateTestConfig, "utf8")
    : `${JSON.stringify({ extends: "../../tsconfig.base.json", compilerOptions: { composite: false, noEmit: true, types: ["bun-types"], rootDir: "." }, include: ["src/**/*.ts", "test/**/*.ts"] }, null, 2)}\n`;

const constName = `${name.toUpperCase().replace(/-/g, "_")}_PACKAGE`;
const index = `/**
 * \`@vhostkit/${name}\`: ${description}
 *
 * Say here what role this package plays in the protocol, what it does not do, and which facts of
 * docs/ it relies on (cite them as docs/<page>.md#<heading>).
 * @packageDocumentation
 */

/** The npm name of this package; replace it with the package's first real export. */
export const ${constName} = "@vhostkit/${name}";
`;

const test = `import assert from "node:assert/strict";
import { test } from "node:test";
import { ${constName} } from "../src/index.js";

test("the entry module loads and names its package", () => {
  assert.equal(${constName}, "@vhostkit/${name}");
});
`;

const readme = `# @vhostkit/${name}

${description}

Where it sits in the package arrow, and why: [docs/architecture.md](../../docs/architecture.md#package-arrow).
${deps.length === 0 ? "It depends on no other vhostkit package." : `It depends on ${deps.map((d) => `\`@vhostkit/${d}\``).join(", ")}.`}

## Non-goals

- (what this package deliberately does not do)

## Example

\`\`\`ts
import { ${constName} } from "@vhostkit/${name}";

console.log(${constName});
\`\`\`
`;

/** @param {unknown} value */
const json = (value) => `${JSON.stringify(value, null, 2)}\n`;

mkdirSync(join(dir, "src"), { recursive: true });
mkdirSync(join(dir, "test"), { recursive: true });
writeFileSync(join(dir, "package.json"), json(manifest));
writeFileSync(join(dir, "tsconfig.json"), json(tsconfig));
writeFileSync(join(dir, "tsconfig.test.json"), tsconfigTest);
writeFileSync(join(dir, "src", "index.ts"), index);
writeFileSync(join(dir, "test", "index.test.ts"), test);
writeFileSync(join(dir, "README.md"), readme);

// Root solution file: the new library before the apps, after the other libraries.
/** @type {{ path: string }[]} */
const refs = rootTsconfig.references ?? [];
const firstNonLibrary = refs.findIndex((r) => !r.path.startsWith("packages/"));
refs.splice(firstNonLibrary === -1 ? refs.length : firstNonLibrary, 0, { path: `packages/${name}` });
rootTsconfig.references = refs;
writeFileSync(rootTsconfigPath, json(rootTsconfig));

// The libraries version together.
if (changeset.fixed === undefined || changeset.fixed.length === 0) changeset.fixed = [[]];
changeset.fixed[0].push(`@vhostkit/${name}`);
writeFileSync(changesetPath, json(changeset));

// Allowed dependencies, one library per line.
graph[name] = deps;
const lines = Object.entries(graph).map(([k, v]) => `  ${JSON.stringify(k)}: ${JSON.stringify(v).replace(/","/g, '", "')}`);
writeFileSync(graphPath, `{\n${lines.join(",\n")}\n}\n`);

console.log(`created packages/${name} (version ${version}${deps.length === 0 ? "" : `, depends on ${deps.join(", ")}`})
added it to tsconfig.json, the fixed group of .changeset/config.json and tools/lint/dependency-graph.json
next: bun install (links the workspace), tsc -b, bun tools/lint/src/main.ts packages/${name},
      bun tools/pack-check/src/main.ts packages/${name}, and a changeset (bun run changeset) for its first release`);
