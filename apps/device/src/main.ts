#!/usr/bin/env bun
/**
 * `vhost-user-device`: the generic vhost-user front-end CLI. Argument parsing and output only; the
 * protocol lives in the @vhostkit packages.
 *
 * Exit codes: 0 success, 1 back-end/protocol failure (one-line error on stderr), 2 usage error.
 */
import { Command, CommanderError } from "commander";
import { decodeCommand } from "./commands/decode.js";

const program = new Command()
  .name("vhost-user-device")
  .description(
    "Inspect and drive any vhost-user back-end without a VM.\n" +
      "Commands that talk to a back-end (probe, blk, rng, check, gpu) arrive with @vhostkit/frontend.",
  )
  .version("0.1.0")
  .exitOverride()
  .configureOutput({ writeErr: (s) => process.stderr.write(s) });

program.addCommand(decodeCommand());

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    process.exit(err.exitCode === 0 ? 0 : 2);
  }
  process.stderr.write(`vhost-user-device: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
}
