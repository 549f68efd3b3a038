/**
 * `vhost-user-device --version` and the install line that heads every `--help`.
 * @module
 */
import { readFileSync } from "node:fs";
import { Dialects } from "@vhostkit/wire";

/**
 * The package version, set by the standalone build (`tools/release/src/build-binaries.ts` defines
 * it): a single-file executable has no package.json next to its code. Undefined everywhere else.
 */
declare const VHOSTKIT_STANDALONE_VERSION: string | undefined;

/** First line of every `--help`: how to get this command from the registry. */
export const INSTALL_LINE = "Run it from the registry: npx @vhostkit/device probe --socket PATH (on Bun: bunx --bun @vhostkit/device ...)";

/**
 * Three lines: `vhost-user-device <version>`, the SHMEM dialects `--dialect` accepts (each with the
 * protocol feature bit that means SHMEM in it, docs/shmem.md#dialects), and the runtime (Node, Bun,
 * or Bun in a standalone executable).
 */
export function versionText(): string {
  const standalone = typeof VHOSTKIT_STANDALONE_VERSION === "string";
  const manifest = standalone ? undefined : (JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string });
  const dialects = Object.values(Dialects).map((d) => `${d.name} (SHMEM bit ${d.shmemFeature.toString(2).length - 1})`);
  const runtime =
    process.versions["bun"] === undefined ? `node ${process.versions.node}` : `bun ${process.versions["bun"]}${standalone ? ", standalone executable" : ""}`;
  return [`vhost-user-device ${manifest?.version ?? VHOSTKIT_STANDALONE_VERSION}`, `protocol dialects: ${dialects.join(", ")}`, `runtime: ${runtime}`].join(
    "\n",
  );
}
