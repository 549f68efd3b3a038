/**
 * Standalone executables of the two apps, the release artifacts for machines without Node or Bun:
 * `bun build --compile` of `vhost-user-device` (apps/device) and `vhostkit-gpu` (apps/gpu-backend)
 * for each target, written as `<out>/<bin>-<target>` with a `SHA256SUMS` file.
 *
 * Usage: `bun tools/release/src/build-binaries.ts [--out DIR] [--target linux-x64,linux-arm64]`
 * (defaults: `tools/release/dist/binaries`, both targets). Runs `tsc -b` of the apps first: the
 * apps' sources import the libraries through their `exports`, which lead to `dist/`.
 *
 * koffi, the FFI the transport runs on, is a native module. Bun embeds a `.node` file in the
 * executable only when it is `require`d with a static path; koffi picks its build at run time
 * (`createRequire` of `@koromix/koffi-<platform>`, whose loader `require`s a path computed from the
 * libc), which the bundler cannot follow. So the build replaces koffi's `src/static.js` with a
 * `require` of the target's `koffi.node` by its literal path. The target's koffi package comes from
 * the install when it is there (the host's platform), else from `npm pack` of the same version
 * (the registry is npm's usual configuration), kept under `<out>/.koffi`.
 *
 * Each executable built for the host's own target is run once (`--version`, which loads koffi).
 *
 * The package version is compiled in (`VHOSTKIT_STANDALONE_VERSION`, read by the apps'
 * `src/version.ts`): a single file has no package.json next to its code. Cross-compiling (another
 * target than the host's) needs Bun to fetch that target's runtime from the npm registry once; it
 * stays in Bun's install cache.
 * @module
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

/** A target this script knows: Bun's compile target and koffi's platform package and build. */
interface Target {
  readonly bunTarget: string;
  /** Directory of the glibc build inside `@koromix/koffi-<name>`. */
  readonly koffiBuild: string;
  /** ELF `e_machine` of that build (62 x86-64, 183 aarch64), checked before it is embedded. */
  readonly elfMachine: number;
}

const TARGETS: Readonly<Record<string, Target>> = {
  "linux-x64": { bunTarget: "bun-linux-x64", koffiBuild: "linux_x64", elfMachine: 62 },
  "linux-arm64": { bunTarget: "bun-linux-arm64", koffiBuild: "linux_arm64", elfMachine: 183 },
};

/** The two executables: bin name, app directory, entry (the same `src/main.ts` the package's bin runs). */
const APPS = [
  { bin: "vhost-user-device", dir: "apps/device" },
  { bin: "vhostkit-gpu", dir: "apps/gpu-backend" },
] as const;

const root = fileURLToPath(new URL("../../..", import.meta.url));
const { values } = parseArgs({
  options: {
    out: { type: "string", default: join(root, "tools", "release", "dist", "binaries") },
    target: { type: "string", default: Object.keys(TARGETS).join(",") },
  },
  strict: true,
});
const out = resolve(values.out);
const targets = values.target.split(",").map((name) => {
  const t = TARGETS[name];
  if (t === undefined) throw new Error(`--target: "${name}" is not one of ${Object.keys(TARGETS).join(", ")}`);
  return { name, ...t };
});

function sh(cmd: string, args: readonly string[], cwd: string): string {
  const r = spawnSync(cmd, args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 300_000 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (${r.status ?? r.signal}):\n${r.stdout}${r.stderr}${r.error?.message ?? ""}`);
  return r.stdout;
}

/** koffi as the transport resolves it: its directory and version. */
function koffiPackage(): { dir: string; version: string } {
  const requireFromTransport = createRequire(join(root, "packages", "transport", "package.json"));
  let dir = dirname(requireFromTransport.resolve("koffi"));
  while (!existsSync(join(dir, "package.json"))) dir = dirname(dir);
  return { dir, version: (JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as { version: string }).version };
}

/** The glibc `koffi.node` of `target`: from the install, else from `npm pack` of koffi's own version. */
function koffiNative(target: (typeof targets)[number], koffi: { dir: string; version: string }): string {
  const name = `@koromix/koffi-${target.name}`;
  let pkgDir: string | undefined;
  try {
    pkgDir = dirname(createRequire(join(koffi.dir, "package.json")).resolve(`${name}/package.json`));
  } catch {
    const cache = join(out, ".koffi", `${target.name}-${koffi.version}`);
    if (!existsSync(join(cache, "package", "package.json"))) {
      mkdirSync(cache, { recursive: true });
      const tgz =
        sh("npm", ["pack", `${name}@${koffi.version}`, "--pack-destination", cache, "--silent"], cache)
          .trim()
          .split("\n")
          .pop() ?? "";
      sh("tar", ["-xzf", join(cache, tgz)], cache);
    }
    pkgDir = join(cache, "package");
  }
  const file = join(pkgDir, target.koffiBuild, "koffi.node");
  const elf = readFileSync(file);
  if (elf.readUInt32BE(0) !== 0x7f454c46 || elf.readUInt16LE(18) !== target.elfMachine)
    throw new Error(`${file} is not an ELF shared object for ${target.name}`);
  return file;
}

sh(join(root, "node_modules", ".bin", "tsc"), ["-b", ...APPS.map((a) => a.dir)], root);
mkdirSync(out, { recursive: true });
const koffi = koffiPackage();
const built: string[] = [];
for (const target of targets) {
  const native = koffiNative(target, koffi);
  for (const app of APPS) {
    const version = (JSON.parse(readFileSync(join(root, app.dir, "package.json"), "utf8")) as { version: string }).version;
    const outfile = join(out, `${app.bin}-${target.name}`);
    let replaced = false;
    const result = await Bun.build({
      entrypoints: [join(root, app.dir, "src", "main.ts")],
      // A command-line tool: the user's .env or bunfig.toml in the working directory must not change it.
      compile: { target: target.bunTarget as Bun.Build.CompileTarget, outfile, autoloadDotenv: false, autoloadBunfig: false },
      define: { VHOSTKIT_STANDALONE_VERSION: JSON.stringify(version) },
      plugins: [
        {
          name: "koffi-static-native",
          setup(build) {
            build.onLoad({ filter: /[\\/]koffi[\\/]src[\\/]koffi[\\/]src[\\/]static\.js$/ }, () => {
              replaced = true;
              const platform = JSON.stringify(target.name);
              return {
                loader: "js",
                contents: `export function loadStatic(pkg) { return pkg === ${platform} ? require(${JSON.stringify(native)}) : null; }\n`,
              };
            });
          },
        },
      ],
    });
    if (!result.success) throw new AggregateError(result.logs, `bun build --compile ${app.bin} for ${target.name} failed`);
    if (!replaced) throw new Error(`${app.bin}: koffi's src/static.js was not bundled (a koffi update?): the executable would not find koffi.node`);
    // On the host's own target, a first run: --version loads every module, koffi's native one included.
    if (target.name === `${process.platform}-${process.arch}`) sh(outfile, ["--version"], out);
    built.push(outfile);
    process.stdout.write(`${outfile}\n`);
  }
}
const sums = readdirSync(out)
  .filter((f) => APPS.some((a) => f.startsWith(`${a.bin}-`)))
  .sort()
  .map(
    (f) =>
      `${createHash("sha256")
        .update(readFileSync(join(out, f)))
        .digest("hex")}  ${f}\n`,
  );
writeFileSync(join(out, "SHA256SUMS"), sums.join(""));
process.stdout.write(`${built.length} executables and SHA256SUMS in ${out}\n`);
