#!/usr/bin/env bun
/**
 * `vhostkit-gpu` entry point. Exit codes: 0 stopped cleanly, 1 failure (one line on stderr), 2 usage.
 * @module
 */
import { runCli, UsageError } from "./cli.js";

try {
  process.exitCode = await runCli(process.argv.slice(2));
} catch (err) {
  process.stderr.write(`vhostkit-gpu: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = err instanceof UsageError ? 2 : 1;
}
