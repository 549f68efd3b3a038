// vhostkit side of the transport benchmark; runtime-neutral (run with bun or node).
//   client <round-trips> <fds: 0|1> [server-binary]: spawns the server (this script under the same
//     runtime, or the C baseline's `serve` mode when a binary is given) on one end of a socketpair,
//     then runs request/reply round trips through RequestChannel and prints mean ns per round trip:
//     first the warm-up's ("cold <ns>": VHOSTKIT_BENCH_RT_WARM round trips, default n / 10 + 1, while
//     the runtime's JIT tiers up), then, on the last line, the timed ones after it.
//   server: fd 3 is its socket end; answers every request with a u64 reply, closes received fds.
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
// VHOSTKIT_BENCH_TRANSPORT: another build of the transport (its dist/index.js), to compare commits in one run.
const { Endpoint, EventFd, OwnedFd, RequestChannel, sendReply, socketPair } = await import(process.env.VHOSTKIT_BENCH_TRANSPORT || "@vhostkit/transport");

const [role, nArg, fdArg, serverBin] = process.argv.slice(2);
if (role === "server") {
  const ep = new Endpoint(new OwnedFd(3));
  const reply = new Uint8Array(8);
  for (;;) {
    let m;
    try {
      m = await ep.recv();
    } catch {
      break;
    }
    for (const f of m.fds) f.close();
    await sendReply(ep, m.request, reply);
  }
  ep.close();
} else {
  const n = Number(nArg ?? 10000);
  const withFd = fdArg === "1";
  const [mine, theirs] = socketPair();
  const [cmd, args] = serverBin ? [serverBin, ["serve"]] : [process.execPath, [fileURLToPath(import.meta.url), "server"]];
  const child = spawn(cmd, args, { stdio: ["ignore", "inherit", "inherit", theirs.fd] });
  theirs.close();
  const ep = new Endpoint(mine);
  const ch = new RequestChannel(ep);
  const efd = EventFd.create();
  const payload = new Uint8Array(8);
  const opts = { expectReply: true, fds: withFd ? [efd.fd] : [] };
  const warm = Number(process.env.VHOSTKIT_BENCH_RT_WARM ?? Math.floor(n / 10) + 1);
  const w0 = process.hrtime.bigint();
  for (let i = 0; i < warm; i++) await ch.request(1, payload, opts);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await ch.request(1, payload, opts);
  const t1 = process.hrtime.bigint();
  ep.close();
  efd.close();
  await new Promise((r) => child.on("exit", r));
  console.log(`cold ${(Number(t0 - w0) / Math.max(1, warm)).toFixed(1)}`);
  console.log((Number(t1 - t0) / n).toFixed(1));
}
