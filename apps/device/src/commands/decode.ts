/**
 * `vhost-user-device decode HEX...`: decodes captured vhost-user frames (header + payload, as hex)
 * and prints, per frame, one JSON object as `trace --json` does: request name, flags by name,
 * size, and the payload fields — or why they do not decode (exit 1 then, after every frame).
 */
import { Command, Option } from "commander";
import { Dialects, type Channel, type DialectName } from "@vhostkit/wire";
import { UsageError } from "../options.js";
import { describeFrame, type FrameDescription } from "../trace/describe-frame.js";

interface DecodeFlags {
  readonly channel: Channel;
  readonly dialect: DialectName;
  readonly compact?: boolean;
}

/** Thrown when a frame did not decode: exit code 1 after every frame was printed. */
export class FramesUndecoded extends Error {}

/** Parses one frame given as hex (whitespace allowed). @throws UsageError for anything else. */
export function frameFromHex(text: string): Uint8Array {
  const clean = text.replace(/\s+/g, "");
  if (!/^([0-9a-fA-F]{2})+$/.test(clean)) throw new UsageError(`decode: "${text}" is not hex bytes`);
  return new Uint8Array(Buffer.from(clean, "hex"));
}

/** Builds the `decode` subcommand. */
export function decodeCommand(): Command {
  return new Command("decode")
    .description("decode vhost-user frames given as hex (header + payload), one JSON object per frame")
    .argument("<hex...>", "one frame per argument, e.g. 010000000100000000000000")
    .addOption(
      new Option("--channel <channel>", "frontend (the main socket, requests and replies) or backend (the back-end channel)")
        .choices(["frontend", "backend"])
        .default("frontend"),
    )
    .addOption(new Option("--dialect <name>", "SHMEM dialect").choices(Object.keys(Dialects)).default("upstream"))
    .option("--compact", "one line per frame")
    .action((frames: string[], flags: DecodeFlags) => {
      const dialect = Dialects[flags.dialect];
      const described: FrameDescription[] = frames.map((h) => describeFrame(flags.channel, frameFromHex(h), dialect));
      for (const d of described) process.stdout.write(`${JSON.stringify(d, null, flags.compact === true ? undefined : 2)}\n`);
      const bad = described.filter((d) => d.error !== undefined).length;
      if (bad > 0) throw new FramesUndecoded(`decode: ${bad} of ${described.length} frame(s) did not decode`);
    });
}
