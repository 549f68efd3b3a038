/**
 * `vhost-user-device state`: fetch a back-end's device state into a file (`save`), or load a file
 * into another instance of the back-end (`load`): DEVICE_STATE, docs/protocol.md#device-state-transfer.
 */
import { readFile, writeFile } from "node:fs/promises";
import { Command } from "commander";
import { Guest, loadDeviceState, saveDeviceState } from "@vhostkit/frontend";
import { addCommon, deviceOptions, type CommonFlags } from "../options.js";

interface SaveFlags extends CommonFlags {
  readonly out: string;
}

interface LoadFlags extends CommonFlags {
  readonly in: string;
}

/** Opens the device on `flags`, runs `fn` on it, and closes everything. */
async function withDevice(flags: CommonFlags, fn: (device: Awaited<ReturnType<Guest["addDevice"]>>) => Promise<void>): Promise<void> {
  const guest = new Guest();
  try {
    const device = await guest.addDevice(deviceOptions(flags));
    await fn(device);
    await device.close();
  } finally {
    await guest.close();
  }
}

/** Builds the `state` subcommand with `save` and `load`. */
export function stateCommand(): Command {
  const cmd = new Command("state").description("save a back-end's device state into a file, or load one into another instance (DEVICE_STATE)");
  const save = new Command("save").description("SET_DEVICE_STATE_FD (save), the pipe read to EOF into --out, CHECK_DEVICE_STATE");
  addCommon(save)
    .requiredOption("--out <file>", "file the state is written to")
    .action(async (flags: SaveFlags) => {
      let bytes = 0;
      await withDevice(flags, async (device) => {
        const state = await saveDeviceState(device);
        await writeFile(flags.out, state);
        bytes = state.byteLength;
      });
      process.stdout.write(
        flags.json === true ? `${JSON.stringify({ saved: bytes, out: flags.out })}\n` : `saved ${bytes} bytes of device state to ${flags.out}\n`,
      );
    });
  const load = new Command("load").description("SET_DEVICE_STATE_FD (load), --in written into the pipe, CHECK_DEVICE_STATE");
  addCommon(load)
    .requiredOption("--in <file>", "file holding a state that `state save` wrote")
    .action(async (flags: LoadFlags) => {
      const state = await readFile(flags.in);
      await withDevice(flags, (device) => loadDeviceState(device, state));
      process.stdout.write(
        flags.json === true
          ? `${JSON.stringify({ loaded: state.byteLength, in: flags.in })}\n`
          : `loaded ${state.byteLength} bytes of device state from ${flags.in}\n`,
      );
    });
  return cmd.addCommand(save).addCommand(load);
}
