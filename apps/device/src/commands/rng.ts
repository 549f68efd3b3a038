/**
 * `vhost-user-device rng`: read random bytes from a virtio-rng back-end.
 */
import { writeFile } from "node:fs/promises";
import { Command } from "commander";
import { Guest, RngDriver } from "@vhostkit/frontend";
import { addCommon, deviceOptions, parseInteger, type CommonFlags } from "../options.js";
import { bytesHex } from "../output.js";

interface RngFlags extends CommonFlags {
  readonly bytes: string;
  readonly out?: string;
}

/** Builds the `rng` subcommand. */
export function rngCommand(): Command {
  const cmd = new Command("rng").description("read N random bytes from a virtio-rng back-end (hex on stdout unless --out)");
  addCommon(cmd, false)
    .requiredOption("--bytes <n>", "number of bytes")
    .option("--out <file>", "write the bytes to FILE instead of printing hex")
    .action(async (flags: RngFlags) => {
      const n = parseInteger(flags.bytes, "--bytes", 1);
      const opts = deviceOptions(flags);
      const guest = new Guest();
      try {
        const device = await guest.addDevice(opts);
        const rng = await RngDriver.attach(device);
        const bytes = await rng.read(n);
        await device.close();
        if (flags.out !== undefined) await writeFile(flags.out, bytes);
        else process.stdout.write(`${bytesHex(bytes)}\n`);
      } finally {
        await guest.close();
      }
    });
  return cmd;
}
