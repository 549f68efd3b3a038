/**
 * `vhost-user-device check`: a conformance report of named checks, each pass/fail/skip with a reason.
 */
import { Command, Option } from "commander";
import { runConformance, runHostileChecks, type ConformanceDeviceType } from "@vhostkit/frontend";
import { addCommon, deviceOptions, type CommonFlags } from "../options.js";
import { json, table } from "../output.js";

interface CheckFlags extends CommonFlags {
  readonly deviceType: ConformanceDeviceType;
  readonly hostile?: boolean;
}

/** Thrown when a check failed: exit code 1 after the report was printed. */
export class ChecksFailed extends Error {}

/** Builds the `check` subcommand. */
export function checkCommand(): Command {
  const cmd = new Command("check").description("conformance report: handshake order, REPLY_ACK, GET_VRING_BASE, config size, memory table, shmem config, ...");
  addCommon(cmd)
    .addOption(new Option("--device-type <type>", "exercise the ring with this driver").choices(["generic", "blk", "rng"]).default("generic"))
    .option(
      "--hostile",
      "then send malformed requests (bad sizes, unknown ids, missing fds, bad ring addresses), each on a new connection: the back-end must refuse or close, and still serve a new connection",
    )
    .action(async (flags: CheckFlags) => {
      const opts = { ...deviceOptions(flags), socketPath: flags.socket };
      const results = [...(await runConformance({ ...opts, deviceType: flags.deviceType })), ...(flags.hostile === true ? await runHostileChecks(opts) : [])];
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
