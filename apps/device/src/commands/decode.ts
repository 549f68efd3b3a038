/**
 * `vhost-user-device decode HEX...`: decodes captured vhost-user frames (header + payload, as hex)
 * and prints the request name, flags, size and the typed payload. Useful for reading traces.
 */
import { Command } from "commander";

/** Builds the `decode` subcommand. */
export function decodeCommand(): Command {
  return new Command("decode")
    .description("decode vhost-user frames given as hex (header + payload)")
    .argument("<hex...>", "one frame per argument, e.g. 010000000100000000000000")
    .option("--channel <channel>", "frontend (requests to the back-end) or backend (back-end channel)", "frontend")
    .action(() => {
      throw new Error("decode: not available until @vhostkit/wire lands");
    });
}
