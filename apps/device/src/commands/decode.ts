/**
 * `vhost-user-device decode HEX...`: decodes captured vhost-user frames (header + payload, as hex)
 * and prints the request name, flags, size and the typed payload. Useful for reading traces.
 */
import { Command, Option } from "commander";
import { decodeHeader, decodeMessage, decodeReply, Dialects, isReply, type Channel, type DialectName } from "@vhostkit/wire";
import { UsageError } from "../options.js";
import { json } from "../output.js";

interface DecodeFlags {
  readonly channel: Channel;
  readonly dialect: DialectName;
}

/** Builds the `decode` subcommand. */
export function decodeCommand(): Command {
  return new Command("decode")
    .description("decode vhost-user frames given as hex (header + payload)")
    .argument("<hex...>", "one frame per argument, e.g. 010000000100000000000000")
    .addOption(new Option("--channel <channel>", "frontend (requests to the back-end) or backend (back-end channel)").choices(["frontend", "backend"]).default("frontend"))
    .addOption(new Option("--dialect <name>", "SHMEM dialect").choices(Object.keys(Dialects)).default("upstream"))
    .action((frames: string[], flags: DecodeFlags) => {
      const dialect = Dialects[flags.dialect];
      for (const h of frames) {
        const clean = h.replace(/\s+/g, "");
        if (!/^([0-9a-fA-F]{2})*$/.test(clean)) throw new UsageError(`decode: "${h}" is not hex`);
        const bytes = new Uint8Array(Buffer.from(clean, "hex"));
        const header = decodeHeader(bytes);
        const d = isReply(header) ? decodeReply(flags.channel, bytes, dialect) : decodeMessage(flags.channel, bytes, dialect);
        process.stdout.write(`${json({ name: d.name, reply: isReply(header), flags: `0x${header.flags.toString(16)}`, size: header.size, value: d.value ?? null })}\n`);
      }
    });
}
