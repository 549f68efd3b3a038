/**
 * Publishes the public packages: checks each has its build (`dist/`), pins the `workspace:` ranges
 * of their manifests ({@link pinWorkspaceRanges}), runs `changeset publish` (which publishes every
 * version not yet on the registry, then creates a git tag `<name>@<version>` per published package),
 * and puts the manifests back whatever happened.
 *
 * Usage, after `changeset version` and `tsc -b`: `bun tools/release/src/publish.ts [changeset
 * publish options]`. The registry and token are npm's usual configuration (`.npmrc`,
 * `npm_config_registry`); the exit code is `changeset publish`'s.
 * @module
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { pinWorkspaceRanges, workspacePackages } from "./pin-workspace-ranges.js";

const root = fileURLToPath(new URL("../../..", import.meta.url));
const unbuilt = workspacePackages(root).filter((p) => p.public && !existsSync(join(p.dir, "dist")));
if (unbuilt.length > 0) {
  process.stderr.write(`not built (run tsc -b first): ${unbuilt.map((p) => p.name).join(", ")}\n`);
  process.exit(1);
}

const pinned = pinWorkspaceRanges(root);
let status = 1;
try {
  const r = spawnSync(join(root, "node_modules", ".bin", "changeset"), ["publish", ...process.argv.slice(2)], { cwd: root, stdio: "inherit" });
  status = r.status ?? 1;
} finally {
  pinned.restore();
}
process.exit(status);
