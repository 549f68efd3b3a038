#!/usr/bin/env bun
/**
 * `vhost-user-device gpu` as a standalone program, for the demo until the command is registered in
 * src/main.ts: `bun apps/device/src/gpu/cli.ts --socket PATH [--json] [--screenshot FILE]`.
 */
import { gpuCommand } from "../commands/gpu.js";

try {
  await gpuCommand().exitOverride().parseAsync(process.argv);
} catch (err) {
  const code = (err as { exitCode?: number }).exitCode;
  if (code === 0) process.exit(0);
  if (code === undefined) process.stderr.write(`vhost-user-device gpu: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(code === undefined ? 1 : 2);
}
