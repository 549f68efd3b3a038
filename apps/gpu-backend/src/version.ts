/**
 * `vhostkit-gpu --version`, and the install line that heads `--help`.
 * @module
 */
import { readFileSync } from "node:fs";
import { Dialects } from "@vhostkit/wire";

/**
 * Defined by the standalone build (`tools/release/src/build-binaries.ts`), whose single file has
 * no package.json to read; undefined under Node and Bun.
 */
declare const VHOSTKIT_STANDALONE_VERSION: string | undefined;

/** First line of `--help`: how to run this back-end from the registry. */
export const INSTALL_LINE =
  "Run it from the registry: npx -p @vhostkit/gpu-backend vhostkit-gpu --socket PATH (on Bun: bunx --bun -p @vhostkit/gpu-backend vhostkit-gpu ...)";

/** `vhostkit-gpu <version>`, then the `--dialect` names with their SHMEM bits (docs/shmem.md#dialects), then the runtime. */
export function versionText(): string {
  const bun = process.versions["bun"];
  if (typeof VHOSTKIT_STANDALONE_VERSION === "string") return lines(VHOSTKIT_STANDALONE_VERSION, `bun ${bun}, standalone executable`);
  const { version } = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string };
  return lines(version, bun === undefined ? `node ${process.versions.node}` : `bun ${bun}`);
}

function lines(version: string, runtime: string): string {
  const bits = Object.values(Dialects).map((d) => `${d.name} (SHMEM bit ${d.shmemFeature.toString(2).length - 1})`);
  return `vhostkit-gpu ${version}\nprotocol dialects: ${bits.join(", ")}\nruntime: ${runtime}`;
}
