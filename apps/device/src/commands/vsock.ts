/**
 * `vhost-user-device vsock`: one virtio-vsock stream between this process's stdin/stdout and the
 * other side of a vsock back-end (vhost-device-vsock: a Unix socket on the host) — `connect PORT`
 * to the host, or `listen PORT` for one connection from it.
 */
import { Command } from "commander";
import { VsockDriver, type VsockStream } from "@vhostkit/frontend";
import { withDevice } from "../device-session.js";
import { addCommon, deviceOptions, parseInteger, UsageError, type CommonFlags } from "../options.js";

interface VsockFlags extends CommonFlags {
  readonly cid: string;
  readonly peerCid?: string;
}

/** virtio-vsock config space: the u64 guest CID (docs/virtio-vsock.md#vsock-configuration-space). */
const VSOCK_CONFIG_SIZE = 8;

function writeOut(chunk: Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => process.stdout.write(chunk, (e) => (e ? reject(e) : resolve())));
}

/**
 * Copies stdin to the stream (then SHUTDOWN SEND) and the stream to stdout. After the peer's
 * sending side ends, stdin keeps flowing while the peer still receives (a half close); once the
 * connection is closed what is left of stdin is dropped, as `nc` does.
 */
async function shuttle(stream: VsockStream): Promise<void> {
  let inputError: unknown;
  const input = (async () => {
    for await (const chunk of process.stdin as AsyncIterable<Uint8Array>) await stream.write(chunk);
    await stream.end();
  })().catch((e: unknown) => {
    inputError = e;
  });
  for await (const chunk of stream) await writeOut(chunk);
  await Promise.race([input, stream.closed]);
  if (stream.state === "closed") process.stdin.destroy();
  await input;
  // Writes fail once the peer has closed: that ends the session, it is not an error.
  if (inputError !== undefined && stream.state !== "closed") throw inputError;
}

/** Builds the `vsock` subcommand. */
export function vsockCommand(): Command {
  const cmd = new Command("vsock")
    .description("a virtio-vsock stream on stdin/stdout: connect PORT (to the host) | listen PORT (one connection from the host)")
    .argument("<operation>", "connect or listen")
    .argument("<port>", "vsock port (u32)");
  addCommon(cmd, false)
    .requiredOption("--cid <n>", "this guest's CID, as the back-end was started with (e.g. vhost-device-vsock --vm guest-cid=N)")
    .option("--peer-cid <n>", "connect: the peer's CID (default 2, the host)")
    .action(async (operation: string, portText: string, flags: VsockFlags) => {
      if (operation !== "connect" && operation !== "listen") throw new UsageError(`vsock: unknown operation "${operation}" (connect PORT | listen PORT)`);
      const port = parseInteger(portText, "PORT");
      if (port > 0xffff_ffff) throw new UsageError(`vsock: port ${port} does not fit u32`);
      const cid = BigInt(parseInteger(flags.cid, "--cid", 3));
      if (flags.peerCid !== undefined && operation !== "connect") throw new UsageError("vsock: --peer-cid goes with connect");
      const peerCid = flags.peerCid === undefined ? undefined : BigInt(parseInteger(flags.peerCid, "--peer-cid"));
      const opts = deviceOptions(flags);
      await withDevice({ ...opts, configSize: VSOCK_CONFIG_SIZE }, async (device) => {
        const vsock = await VsockDriver.attach(device, { guestCid: cid });
        try {
          let stream: VsockStream;
          if (operation === "connect")
            stream = await vsock.connect(port, { ...(peerCid === undefined ? {} : { cid: peerCid }), timeoutMs: opts.timeoutMs ?? 5000 });
          else {
            const accepted = vsock.listen(port);
            // stdout is the stream: the one status line goes to stderr (the peer may connect now).
            process.stderr.write(`vhost-user-device: listening on vsock port ${port} as CID ${vsock.guestCid}\n`);
            stream = await accepted;
          }
          await shuttle(stream);
          await stream.close();
        } finally {
          await vsock.close();
        }
      });
    });
  return cmd;
}
