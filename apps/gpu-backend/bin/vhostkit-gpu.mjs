#!/usr/bin/env node
// vhostkit-gpu launcher: Bun runs the TypeScript sources; Node >= 20 runs the build in dist/
// (`bun run build` in apps/gpu-backend, or `tsc -b apps/gpu-backend` from the repository root).
import { existsSync } from "node:fs";

const entry = typeof globalThis.Bun !== "undefined" ? new URL("../src/main.ts", import.meta.url) : new URL("../dist/main.js", import.meta.url);
if (!existsSync(entry)) {
  process.stderr.write("vhostkit-gpu: dist/ is missing; build first: node_modules/.bin/tsc -b apps/gpu-backend\n");
  process.exit(1);
}
await import(entry.href);
