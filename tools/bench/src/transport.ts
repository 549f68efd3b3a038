/**
 * Transport benchmark (issue 3): request/reply round trips between two processes — a 12-byte
 * header + 8-byte payload request, a u64 reply — with 0 and 1 fd attached. vhostkit on both ends
 * (RequestChannel + Endpoint, Bun and Node) against a C baseline doing the same recvmsg/sendmsg
 * framing (tools/bench/c/transport-pingpong.c), interleaved in the same run. Prints vhostkit ÷ C,
 * and Bun and Node ÷ a busy-polling C pair (both C ends spin, as vhostkit's reactor does).
 */
import { join } from "node:path";
import { compileC, interleaveSamples, median, note, root, runFigures, runNumber, size, spread, table } from "./harness.js";

/** Run the transport benchmark and print its table. */
export async function run(): Promise<void> {
  const c = compileC("transport-pingpong");
  const script = join(import.meta.dir, "transport-pingpong.mjs");
  const n = Number(process.env.VHOSTKIT_BENCH_RT ?? size(20000, 200));
  // Round trips each client runs before the timed ones, C and vhostkit alike. A runtime's JIT tiers
  // up over the first several thousand (Bun: 14–18 µs per round trip in the first 5 000, 7.5–10 µs
  // from the 10 000th on), so the timed window starts after them; the warm-up's own mean is printed
  // as the cold figure, next to the steady state.
  const warm = Number(process.env.VHOSTKIT_BENCH_RT_WARM ?? size(20000, 20));
  const warmEnv = { VHOSTKIT_BENCH_RT_WARM: String(warm) };
  const rounds = size(5, 1);
  const colds: (string | number)[][] = [];
  const rows: (string | number)[][] = [];
  const ratios: (string | number)[][] = [];
  const rates: string[][] = [];
  const versus: (string | number)[][] = [];
  // VHOSTKIT_BENCH_TRANSPORT_BASE: the dist/index.js of another transport build (an older commit),
  // measured in the same interleaved rounds: "before" and "after" side by side.
  const before = process.env["VHOSTKIT_BENCH_TRANSPORT_BASE"];
  const withBase = (cmd: string, fd: string): number =>
    runNumber(cmd, [script, "client", String(n), fd], root, { ...warmEnv, VHOSTKIT_BENCH_TRANSPORT: before ?? "" });
  for (const fd of ["0", "1"]) {
    // The vhostkit clients' cold figures (their warm-up's mean), per round.
    const cold = { bun: [] as number[], node: [] as number[] };
    const vhostkit = (cmd: string, k: "bun" | "node"): number => {
      const r = runFigures(cmd, [script, "client", String(n), fd], root, warmEnv);
      cold[k].push(r.labelled["cold"] ?? Number.NaN);
      return r.value;
    };
    const s = interleaveSamples(rounds, {
      ...(before ? { bunBase: () => withBase(process.execPath, fd), nodeBase: () => withBase("node", fd) } : {}),
      c: () => runNumber(c, [String(n), fd], root, warmEnv),
      cSpin: () => runNumber(c, [String(n), fd, "spin"], root, warmEnv),
      bun: () => vhostkit(process.execPath, "bun"),
      node: () => vhostkit("node", "node"),
      bunC: () => runNumber(process.execPath, [script, "client", String(n), fd, c], root, warmEnv),
      nodeC: () => runNumber("node", [script, "client", String(n), fd, c], root, warmEnv),
    });
    const m = Object.fromEntries(Object.entries(s).map(([k, v]) => [k, median(v)])) as Record<string, number>;
    const coldCell = (k: "bun" | "node"): string => {
      const r = spread(cold[k]);
      return `${r.median.toFixed(0)} (${r.lo.toFixed(0)}–${r.hi.toFixed(0)})`;
    };
    colds.push([`${fd} fd`, coldCell("bun"), (m.bun ?? 0).toFixed(0), coldCell("node"), (m.node ?? 0).toFixed(0)]);
    const base = m.c ?? 1;
    const cell = (k: string): string[] => [(m[k] ?? 0).toFixed(0), ((m[k] ?? 0) / base).toFixed(2)];
    rows.push([
      `${fd} fd`,
      (m.c ?? 0).toFixed(0),
      ...cell("bun"),
      ...cell("node"),
      ...cell("bunC"),
      ...cell("nodeC"),
      (m.cSpin ?? 0).toFixed(0),
      ((m.bun ?? 0) / (m.cSpin ?? 1)).toFixed(2),
      ((m.node ?? 0) / (m.cSpin ?? 1)).toFixed(2),
    ]);
    // Ratios taken per round (both figures from the same seconds), then their median and range.
    const perRound = (k: string, b: string): string => {
      const r = spread((s[k] ?? []).map((x, i) => x / (s[b]?.[i] ?? 1)));
      return `${r.median.toFixed(2)} (${r.lo.toFixed(2)}–${r.hi.toFixed(2)})`;
    };
    const range = (k: string): string => {
      const r = spread(s[k] ?? [0]);
      return `${r.lo.toFixed(0)}–${r.hi.toFixed(0)}`;
    };
    ratios.push([
      `${fd} fd`,
      range("c"),
      range("cSpin"),
      range("bun"),
      range("node"),
      perRound("bun", "c"),
      perRound("node", "c"),
      perRound("bun", "cSpin"),
      perRound("node", "cSpin"),
    ]);
    if (before) {
      for (const [rt, now, then] of [
        ["Bun↔Bun", "bun", "bunBase"],
        ["Node↔Node", "node", "nodeBase"],
      ] as const) {
        versus.push([
          `${fd} fd`,
          rt,
          (m[then] ?? 0).toFixed(0),
          (m[now] ?? 0).toFixed(0),
          perRound(now, then),
          perRound(then, "c"),
          perRound(now, "c"),
          perRound(then, "cSpin"),
          perRound(now, "cSpin"),
        ]);
      }
    }
    // Round trips per second: one request/reply at a time, so the reciprocal of the latency.
    const perSecond = (k: string): string => (m[k] ? (1e9 / m[k]).toFixed(0) : "-");
    rates.push([`${fd} fd`, perSecond("c"), perSecond("bun"), perSecond("node"), perSecond("bunC"), perSecond("nodeC"), perSecond("cSpin")]);
  }
  note(`round trip, ns (median of ${rounds} interleaved rounds of ${n} round trips each, timed after ${warm} untimed ones); target Bun ÷ C <= 1.25`);
  note("both ends vhostkit (Bun, Node), and a vhostkit client against the C server (Bun→C, Node→C);");
  note("÷C against C blocking in recvmsg (the issue's baseline); C spin: both C ends busy-poll, ÷ = Bun↔Bun and Node↔Node ÷ that");
  table(["fds", "C↔C", "Bun↔Bun", "÷C", "Node↔Node", "÷C", "Bun→C", "÷C", "Node→C", "÷C", "C spin", "Bun ÷ C spin", "Node ÷ C spin"], rows);
  note("spread: lowest–highest ns of the rounds; ratios taken per round, median (lowest–highest); goals ÷C <= 1.25, ÷ C spin <= 2.5");
  table(["fds", "C↔C ns", "C spin ns", "Bun↔Bun ns", "Node↔Node ns", "Bun ÷ C", "Node ÷ C", "Bun ÷ C spin", "Node ÷ C spin"], ratios);
  if (before) {
    note(`before = ${before}; after = this tree; same interleaved rounds; ratios per round, median (lowest–highest)`);
    table(["fds", "runtime", "before ns", "after ns", "after ÷ before", "before ÷ C", "after ÷ C", "before ÷ C spin", "after ÷ C spin"], versus);
  }
  note(
    `cold: mean ns of the first ${warm} round trips of a fresh process pair (the untimed warm-up), median (lowest–highest) of the rounds; warm = the timed figure above`,
  );
  table(["fds", "Bun↔Bun cold", "Bun↔Bun warm", "Node↔Node cold", "Node↔Node warm"], colds);
  note("round trips/s (same runs)");
  table(["fds", "C↔C", "Bun↔Bun", "Node↔Node", "Bun→C", "Node→C", "C spin"], rates);
}
