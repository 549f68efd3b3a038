#!/usr/bin/env node
// vhostkit-gpu launcher: Node >= 20 and Bun run the build in dist/ (what the package ships); in a
// clone of the repository Bun runs the TypeScript sources, which the package does not ship.
import { existsSync } from "node:fs";

const sources = new URL("../src/main.ts", import.meta.url);
const entry = typeof globalThis.Bun !== "undefined" && existsSync(sources) ? sources : new URL("../dist/main.js", import.meta.url);
if (!existsSync(entry)) {
  process.stderr.write("vhostkit-gpu: dist/ is missing; build first: node_modules/.bin/tsc -b apps/gpu-backend\n");
  process.exit(1);
}
await import(entry.href);
