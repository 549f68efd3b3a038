/**
 * npm consumers are proven to work: every public package (the libraries and the two apps) is packed
 * exactly as it would be published (`bun pm pack`), the tarballs are installed with **npm** into a
 * fresh project outside the workspace, and every `exports` entry point is imported by Node 20 (and
 * by Bun), from the installed tarballs, not from the workspace sources. A transport round trip with
 * an fd runs in the installed copy under both runtimes, and the apps' commands answer `--version`
 * under both.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../../..", import.meta.url));
const bun = join(root, "node_modules", ".bin", "bun");

interface Manifest {
  name: string;
  version: string;
  private?: boolean;
  exports?: Record<string, unknown>;
  bin?: Record<string, string>;
}

const packages = ["packages", "apps"]
  .flatMap((top) => readdirSync(join(root, top)).map((d) => join(root, top, d)))
  .filter((d) => existsSync(join(d, "package.json")))
  .map((dir) => ({ dir, manifest: JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as Manifest }))
  .filter((p) => p.manifest.private !== true);

let consumer = "";

function sh(cmd: string, args: string[], cwd: string): string {
  const r = spawnSync(cmd, args, { cwd, encoding: "utf8", timeout: 300_000 });
  assert.equal(r.status, 0, `${cmd} ${args.join(" ")} failed:\n${r.stdout}${r.stderr}`);
  return r.stdout;
}

before(() => {
  consumer = mkdtempSync(join(tmpdir(), "vhostkit-consumer-"));
  const tarballs = join(consumer, "tarballs");
  for (const p of packages) sh(bun, ["pm", "pack", "--destination", tarballs, "--quiet"], p.dir);
  writeFileSync(join(consumer, "package.json"), JSON.stringify({ name: "consumer", private: true, type: "module" }));
  const tgz = readdirSync(tarballs).map((f) => join(tarballs, f));
  assert.equal(tgz.length, packages.length);
  sh("npm", ["install", "--no-audit", "--no-fund", "--no-package-lock", "--loglevel=error", ...tgz], consumer);
});

after(() => {
  if (consumer) rmSync(consumer, { recursive: true, force: true });
});

function entryPoints(m: Manifest): string[] {
  return Object.keys(m.exports ?? { ".": {} })
    .filter((k) => k !== "./package.json" && !k.includes("*"))
    .map((k) => (k === "." ? m.name : `${m.name}/${k.slice(2)}`));
}

const ROUND_TRIP = `
import { Endpoint, EventFd, socketPair } from "@vhostkit/transport";
const [x, y] = socketPair();
const a = new Endpoint(x), b = new Endpoint(y);
const e = EventFd.create();
await a.send(12, 1, new Uint8Array(8), [e.fd]);
const m = await b.recv();
if (m.request !== 12 || m.fds.length !== 1) throw new Error("bad round trip");
new EventFd(m.fds[0]).signal(5n);
if ((await e.wait()) !== 5n) throw new Error("eventfd did not cross");
a.close(); b.close(); e.close();
console.log("round trip ok");
`;

describe("packed packages installed with npm", () => {
  for (const runtime of ["node", "bun"] as const) {
    test(`${runtime} imports every entry point of every public package from the installed tarballs`, () => {
      for (const p of packages) {
        for (const spec of entryPoints(p.manifest)) {
          const code = `const m = await import(${JSON.stringify(spec)}); const n = Object.keys(m).length; if (n === 0) throw new Error("no exports"); console.log(n);`;
          const args = runtime === "node" ? ["--input-type=module", "-e", code] : ["-e", code];
          const out = sh(runtime === "node" ? "node" : bun, args, consumer);
          assert.ok(Number(out.trim()) > 0, `${spec}: ${out}`);
        }
      }
    });

    test(`${runtime} passes an eventfd over a socketpair with the installed @vhostkit/transport`, () => {
      writeFileSync(join(consumer, "round-trip.mjs"), ROUND_TRIP);
      assert.match(sh(runtime === "node" ? "node" : bun, ["round-trip.mjs"], consumer), /round trip ok/);
    });
  }

  for (const runtime of ["node", "bun"] as const) {
    test(`${runtime} runs each installed app's command: --version names the package version and the runtime, --help starts with the install line`, () => {
      const apps = packages.filter((p) => p.manifest.bin !== undefined);
      assert.deepEqual(apps.flatMap((p) => Object.keys(p.manifest.bin ?? {})).sort(), ["vhost-user-device", "vhostkit-gpu"]);
      for (const p of apps) {
        for (const name of Object.keys(p.manifest.bin ?? {})) {
          const link = join(consumer, "node_modules", ".bin", name);
          // Node through the bin's shebang, as npx does; Bun explicitly, as bunx --bun does.
          const lines = (runtime === "node" ? sh(link, ["--version"], consumer) : sh(bun, [link, "--version"], consumer)).trim().split("\n");
          assert.equal(lines[0], `${name} ${p.manifest.version}`);
          assert.match(lines[1] ?? "", /^protocol dialects: upstream \(SHMEM bit 22\), /);
          assert.match(lines[2] ?? "", runtime === "node" ? /^runtime: node / : /^runtime: bun \d/);
          const help = runtime === "node" ? sh(link, ["--help"], consumer) : sh(bun, [link, "--help"], consumer);
          assert.ok(
            help.startsWith(
              `Run it from the registry: npx ${name === "vhostkit-gpu" ? "-p @vhostkit/gpu-backend vhostkit-gpu" : "@vhostkit/device probe"} --socket PATH`,
            ),
            help,
          );
        }
      }
    });
  }

  test("the installed copies are the tarballs, not links into the workspace", () => {
    for (const p of packages) {
      const installed = join(consumer, "node_modules", ...p.manifest.name.split("/"));
      assert.ok(existsSync(join(installed, "dist")), `${p.manifest.name} has dist/`);
      assert.ok(!readFileSync(join(installed, "package.json"), "utf8").includes("workspace:"), `${p.manifest.name} has no workspace: ranges`);
    }
  });
});
