/**
 * Consumer projects of the release rehearsal: fresh directories outside the workspace that install
 * the published packages from the local registry, and the scripts they run.
 */
import { mkdirSync, readFileSync, realpathSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/**
 * Connects to a back-end with the installed @vhostkit/frontend and prints the shared memory
 * regions it reports (GET_SHMEM_CONFIG): `[{"shmid":1,"size":"0x1000000"}]`.
 * Usage: `probe-shmem.mjs <socket> [dialect]`.
 */
const PROBE_SHMEM = `import { Guest } from "@vhostkit/frontend";
const [socketPath, dialect = "upstream"] = process.argv.slice(2);
const guest = new Guest();
try {
  const device = await guest.addDevice({ socketPath, dialect });
  console.log(JSON.stringify(device.info.shmem.map((r) => ({ shmid: r.shmid, size: "0x" + r.size.toString(16) }))));
} finally {
  await guest.close();
}
`;

/**
 * A tiny device on the installed @vhostkit/backend (one queue, shared memory region 3 of 2 MiB),
 * probed in the same process by the installed @vhostkit/frontend; prints what the front-end saw.
 */
const OWN_BACKEND = `import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { serve } from "@vhostkit/backend";
import { Guest } from "@vhostkit/frontend";
const dir = mkdtempSync(join(tmpdir(), "vhostkit-consumer-"));
const server = serve(join(dir, "device.sock"), {
  features: 0n,
  queueCount: 1,
  maxQueueSize: 64,
  shmemRegions: () => [{ shmid: 3, size: 2n << 20n }],
  processQueue() {},
});
const guest = new Guest();
try {
  const device = await guest.addDevice({ socketPath: server.path });
  console.log(JSON.stringify({ queueNum: device.info.queueNum, shmem: device.info.shmem.map((r) => ({ shmid: r.shmid, size: "0x" + r.size.toString(16) })) }));
} finally {
  await guest.close();
  server.close();
  await server.done;
  rmSync(dir, { recursive: true, force: true });
}
`;

/**
 * What the installed packages say about the draft SHMEM dialect: the installed versions, the
 * dialect's SHMEM feature bit, and the names @vhostkit/wire gives to bits 20 and 21 in it.
 */
const DIALECT = `import { readFileSync } from "node:fs";
import { DRAFT, protocolFeatureNames } from "@vhostkit/wire";
const version = (name) => JSON.parse(readFileSync(new URL("./node_modules/" + name + "/package.json", import.meta.url), "utf8")).version;
console.log(JSON.stringify({
  wire: version("@vhostkit/wire"),
  frontend: version("@vhostkit/frontend"),
  backend: version("@vhostkit/backend"),
  draftShmemBit: DRAFT.shmemFeature.toString(2).length - 1,
  bit20: protocolFeatureNames(1n << 20n, DRAFT),
  bit21: protocolFeatureNames(1n << 21n, DRAFT),
}));
`;

/** A fresh consumer project: `package.json` with `dependencies`, the probe scripts, and for bun a `bunfig.toml` naming the registry. */
export function createConsumer(dir: string, dependencies: Record<string, string>, registry: string): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "package.json"), `${JSON.stringify({ name: "vhostkit-consumer", private: true, type: "module", dependencies }, null, 2)}\n`);
  writeFileSync(join(dir, "bunfig.toml"), `[install]\nregistry = "${registry}"\n`);
  writeFileSync(join(dir, "probe-shmem.mjs"), PROBE_SHMEM);
  writeFileSync(join(dir, "own-backend.mjs"), OWN_BACKEND);
  writeFileSync(join(dir, "dialect.mjs"), DIALECT);
}

/**
 * Version of `name` installed in the consumer at `dir`; throws if it lives outside the project
 * (a link into the workspace rather than an installed copy) or kept `workspace:` ranges.
 */
export function installedVersion(dir: string, name: string): string {
  const installed = realpathSync(join(dir, "node_modules", ...name.split("/")));
  if (!installed.startsWith(`${realpathSync(dir)}/`)) throw new Error(`${name} in ${dir} resolves to ${installed}, outside the project`);
  const manifest = readFileSync(join(installed, "package.json"), "utf8");
  if (manifest.includes("workspace:")) throw new Error(`${name} in ${dir} has workspace: ranges in its manifest`);
  return (JSON.parse(manifest) as { version: string }).version;
}

/** Parses the last stdout line of a probe script as JSON. */
export function lastJson<T>(output: string): T {
  const lines = output.trim().split("\n");
  return JSON.parse(lines[lines.length - 1] ?? "") as T;
}
