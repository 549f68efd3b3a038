/**
 * The release's standalone executables: `src/build-binaries.ts` compiles both apps for linux-x64
 * into a temp directory; from another temp directory, with only `sh` on PATH (no Node, no Bun, no
 * node_modules) and nothing else in the environment but HOME, the compiled `vhost-user-device
 * probe --json` reads the compiled `vhostkit-gpu`'s shared memory region, koffi's native module
 * loading from inside each single file.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Deadline, run } from "./helpers/processes.js";
import { probeCompiled, shOnlyPath, type CompiledRun } from "./helpers/standalone.js";

const root = fileURLToPath(new URL("../../..", import.meta.url));
const version = (app: string): string => (JSON.parse(readFileSync(join(root, "apps", app, "package.json"), "utf8")) as { version: string }).version;

let tmp = "";
let compiled: CompiledRun | undefined;

describe("standalone executables (bun build --compile, linux-x64)", () => {
  before(async () => {
    const deadline = new Deadline(100_000);
    tmp = mkdtempSync(join(tmpdir(), "vhostkit-binaries-"));
    const binDir = join(tmp, "binaries");
    await run(
      join(root, "node_modules", ".bin", "bun"),
      [join(root, "tools", "release", "src", "build-binaries.ts"), "--target", "linux-x64", "--out", binDir],
      { cwd: root, deadline },
    );
    const cwd = join(tmp, "elsewhere");
    mkdirSync(cwd);
    const socket = join(cwd, "gpu.sock");
    const pair = {
      gpu: [join(binDir, "vhostkit-gpu-linux-x64"), "--socket", socket, "--shm-size", "16M"],
      probe: [join(binDir, "vhost-user-device-linux-x64"), "probe", "--socket", socket, "--json"],
    };
    compiled = await probeCompiled(pair, cwd, shOnlyPath(join(tmp, "path")), deadline);
  });

  after(() => {
    if (tmp !== "") rmSync(tmp, { recursive: true, force: true });
  });

  test("compiled vhost-user-device probe --json finds the compiled vhostkit-gpu's shmid 1 with only sh on PATH", () => {
    assert.ok(compiled, "the executables were built and run (see the before hook's error)");
    assert.deepEqual(compiled.probe["shmem"], [{ shmid: compiled.listening["shmid"], size: compiled.listening["shmSize"] }]);
    assert.deepEqual(compiled.probe["shmem"], [{ shmid: 1, size: "0x1000000" }]);
    assert.equal(compiled.probe["queueNum"], 2);
    assert.equal(compiled.probe["dialect"], "upstream");
  });

  test("--version of each executable: the package version, the four SHMEM dialects, Bun inside a standalone executable", () => {
    assert.ok(compiled, "the executables were built and run (see the before hook's error)");
    for (const [lines, name, app] of [
      [compiled.deviceVersion, "vhost-user-device", "device"],
      [compiled.gpuVersion, "vhostkit-gpu", "gpu-backend"],
    ] as const) {
      assert.equal(lines[0], `${name} ${version(app)}`);
      assert.equal(lines[1], "protocol dialects: upstream (SHMEM bit 22), rust-vmm-0.16 (SHMEM bit 21), draft (SHMEM bit 20), crosvm-legacy (SHMEM bit 31)");
      assert.match(lines[2] ?? "", /^runtime: bun \d+\.\d+\.\d+, standalone executable$/);
    }
  });
});
