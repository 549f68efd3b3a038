#!/usr/bin/env node
/**
 * `vhost-user-device`: the generic vhost-user front-end CLI. Argument parsing and output only; the
 * protocol lives in the @vhostkit packages.
 *
 * Exit codes: 0 success, 1 back-end/protocol failure (one-line error on stderr), 2 usage error.
 */
import { Command, CommanderError } from "commander";
import { blkCommand } from "./commands/blk.js";
import { checkCommand, ChecksFailed } from "./commands/check.js";
import { decodeCommand } from "./commands/decode.js";
import { fsCommand } from "./commands/fs.js";
import { netCommand } from "./commands/net.js";
import { gpuCommand } from "./commands/gpu.js";
import { probeCommand } from "./commands/probe.js";
import { rngCommand } from "./commands/rng.js";
import { stateCommand } from "./commands/state.js";
import { traceCommand } from "./commands/trace.js";
import { vsockCommand } from "./commands/vsock.js";
import { UsageError } from "./options.js";
import { INSTALL_LINE, versionText } from "./version.js";

const program = new Command()
  .name("vhost-user-device")
  .description("Inspect and drive any vhost-user back-end without a VM.")
  .version(versionText(), "-V, --version", "print the version, the protocol dialects and the runtime")
  .addHelpText("beforeAll", `${INSTALL_LINE}\n`)
  .showHelpAfterError()
  .configureOutput({ writeErr: (s) => process.stderr.write(s) });

for (const c of [
  probeCommand(),
  blkCommand(),
  rngCommand(),
  checkCommand(),
  gpuCommand(),
  fsCommand(),
  vsockCommand(),
  netCommand(),
  stateCommand(),
  traceCommand(),
  decodeCommand(),
])
  program.addCommand(c);
// exitOverride on every command so usage errors surface here (exit 2) instead of process.exit(1).
for (const c of [program, ...program.commands, ...program.commands.flatMap((c) => c.commands)]) c.exitOverride();

function oneLine(s: string): string {
  return s.replace(/\s+/g, " ").trim();
}

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    process.exit(err.exitCode === 0 ? 0 : 2);
  }
  if (err instanceof UsageError) {
    process.stderr.write(`vhost-user-device: ${oneLine(err.message)}\n`);
    process.exit(2);
  }
  if (err instanceof ChecksFailed) {
    process.stderr.write(`vhost-user-device: ${err.message}\n`);
    process.exit(1);
  }
  process.stderr.write(`vhost-user-device: ${oneLine(err instanceof Error ? err.message : String(err))}\n`);
  process.exit(1);
}
