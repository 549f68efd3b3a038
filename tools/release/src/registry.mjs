/**
 * A throwaway npm registry for the release rehearsal: Verdaccio on 127.0.0.1, an ephemeral port,
 * storage under the directory given as the only argument. No uplinks: it serves only what is
 * published to it. `@vhostkit/*` and the third-party packages our libraries depend on (seeded by the
 * test from the workspace install) may be published anonymously.
 *
 * Usage: `node tools/release/src/registry.mjs <dir> [package-pattern ...]`. Prints one JSON line
 * `{"event":"listening","url":"http://127.0.0.1:<port>/"}` once it accepts connections; exits on
 * SIGTERM or SIGINT.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { runServer } from "verdaccio";

const [dir, ...patterns] = process.argv.slice(2);
if (dir === undefined) {
  process.stderr.write("usage: registry.mjs <dir> [package-pattern ...]\n");
  process.exit(2);
}
mkdirSync(join(dir, "storage"), { recursive: true });
const open = { access: "$all", publish: "$anonymous" };
const packages = Object.fromEntries(["@vhostkit/*", ...patterns].map((p) => [p, open]));
const config = {
  storage: join(dir, "storage"),
  auth: { htpasswd: { file: join(dir, "htpasswd"), max_users: -1 } },
  uplinks: {},
  packages,
  web: { enable: false },
  log: { type: "stdout", format: "json", level: "warn" },
};
const file = join(dir, "config.yaml"); // JSON is YAML; a .json name would be read as a deprecated JS config
writeFileSync(file, JSON.stringify(config, null, 2));
const server = await runServer(file);
server.listen(0, "127.0.0.1", () => {
  const { port } = server.address();
  process.stdout.write(`${JSON.stringify({ event: "listening", url: `http://127.0.0.1:${port}/` })}\n`);
});
const stop = () => server.close(() => process.exit(0));
process.once("SIGTERM", stop);
process.once("SIGINT", stop);
