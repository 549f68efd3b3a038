/**
 * `vhost-user-device check`: a conformance report of named checks, each pass/fail/skip with a reason.
 */
import { Command, Option } from "commander";
import { runConformance, type ConformanceDeviceType } from "@vhostkit/frontend";
import { addCommon, deviceOptions, type CommonFlags } from "../options.js";
import { json, table } from "../output.js";

interface CheckFlags extends CommonFlags {
  readonly deviceType: ConformanceDeviceType;
}

/** Thrown when a check failed: exit code 1 after the report was printed. */
export class ChecksFailed extends Error {}

/** Builds the `check` subcommand. */
export function checkCommand(): Command {
  const cmd = new Command("check").description("conformance report: handshake order, REPLY_ACK, GET_VRING_BASE, config size, memory table, shmem config, ...");
  addCommon(cmd)
    .addOption(new Option("--device-type <type>", "exercise the ring with this driver").choices(["generic", "blk", "rng"]).default("generic"))
    .action(async (flags: CheckFlags) => {
      const results = await runConformance({ ...deviceOptions(flags), socketPath: flags.socket, deviceType: flags.deviceType });
      const failed = results.filter((r) => r.status === "fail").length;
      if (flags.json === true) process.stdout.write(`${json({ ok: failed === 0, checks: results })}\n`);
      else {
        process.stdout.write(`${table([["check", "result", "reason"], ...results.map((r) => [r.name, r.status.toUpperCase(), r.reason])])}\n`);
        process.stdout.write(`${results.length - failed} of ${results.length} checks did not fail\n`);
      }
      if (failed > 0) throw new ChecksFailed(`${failed} check(s) failed`);
    });
  return cmd;
}
