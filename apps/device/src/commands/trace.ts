/**
 * `vhost-user-device trace --listen SOCK --connect SOCK`: a transparent proxy between a real
 * front-end (QEMU, ...) and a back-end that prints every message both ways, the back-end channel
 * included, decoded in the negotiated dialect, with reply latencies and a summary at the end.
 */
import { createWriteStream, type WriteStream } from "node:fs";
import { Command, Option } from "commander";
import { connect, describeErrno, isTransportError, listen, type Endpoint } from "@vhostkit/transport";
import { Dialects, type DialectName } from "@vhostkit/wire";
import { UsageError } from "../options.js";
import { RELAY_ENDPOINT_OPTIONS, TraceSession } from "../trace/trace-session.js";
import { recordLine, summaryText, TraceStats, type TraceRecord } from "../trace/trace-log.js";

interface TraceFlags {
  readonly listen: string;
  readonly connect: string;
  readonly json?: boolean;
  readonly out?: string;
  readonly dialect: DialectName;
}

/** A transport failure of a system call as `connect PATH: no such file or directory (ENOENT)`. */
function systemError(what: string, err: unknown): Error {
  if (isTransportError(err) && err.errno !== 0) return new Error(`${what}: ${describeErrno(err.errno)}`);
  return new Error(`${what}: ${err instanceof Error ? err.message : String(err)}`);
}

/** Writes lines to stdout or a file, and waits for them to be flushed at the end. */
function lineSink(out: string | undefined): { readonly write: (line: string) => void; readonly end: () => Promise<void> } {
  const stream: NodeJS.WritableStream | WriteStream = out === undefined ? process.stdout : createWriteStream(out);
  return {
    write: (line) => void stream.write(`${line}\n`),
    end: () =>
      out === undefined
        ? Promise.resolve()
        : new Promise<void>((resolve, reject) => (stream as WriteStream).end((e?: Error | null) => (e ? reject(e) : resolve()))),
  };
}

/** Builds the `trace` subcommand. */
export function traceCommand(): Command {
  return new Command("trace")
    .description(
      "transparent proxy between a front-end and a back-end: every message and fd relayed both ways (back-end channel included), printed decoded, with reply latencies and a summary",
    )
    .requiredOption("--listen <path>", "unix socket the front-end connects to (created; removed at the end)")
    .requiredOption("--connect <path>", "the back-end's unix socket")
    .option("--json", 'one JSON object a line per message, then {"summary": ...}')
    .option("--out <file>", "write the trace to FILE instead of stdout")
    .addOption(
      new Option("--dialect <name>", "SHMEM dialect until SET_PROTOCOL_FEATURES settles one (bit 22 upstream, bit 31 crosvm-legacy)")
        .choices(Object.keys(Dialects))
        .default("upstream"),
    )
    .action(async (flags: TraceFlags) => {
      if (flags.listen === flags.connect) throw new UsageError("trace: --listen and --connect must be different sockets");
      let listener;
      try {
        listener = listen(flags.listen, RELAY_ENDPOINT_OPTIONS);
      } catch (err) {
        throw systemError(`listen ${flags.listen}`, err);
      }
      const sink = lineSink(flags.out);
      const stats = new TraceStats();
      let session: TraceSession | undefined;
      const interrupt = () => (session === undefined ? listener.close() : session.stop("interrupted"));
      process.once("SIGINT", interrupt);
      process.once("SIGTERM", interrupt);
      try {
        // stdout may be the trace: the one status line goes to stderr (the front-end may connect now).
        process.stderr.write(`vhost-user-device: tracing ${flags.listen} -> ${flags.connect}\n`);
        let frontend: Endpoint;
        try {
          frontend = await listener.accept();
        } catch (err) {
          throw systemError(`accept on ${flags.listen}`, err);
        }
        let backend: Endpoint;
        try {
          backend = await connect(flags.connect, RELAY_ENDPOINT_OPTIONS);
        } catch (err) {
          frontend.close();
          throw systemError(`connect ${flags.connect}`, err);
        }
        const onRecord = (r: TraceRecord) => {
          stats.add(r);
          sink.write(flags.json === true ? JSON.stringify(r) : recordLine(r));
        };
        session = new TraceSession(frontend, backend, Dialects[flags.dialect], onRecord);
        const end = await session.run();
        const summary = stats.summary(session.elapsedMs, end);
        sink.write(flags.json === true ? JSON.stringify({ summary }) : summaryText(summary));
      } finally {
        process.off("SIGINT", interrupt);
        process.off("SIGTERM", interrupt);
        listener.close();
        await sink.end();
      }
    });
}
