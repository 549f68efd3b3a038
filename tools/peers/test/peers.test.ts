/**
 * The peer tooling itself: fetch.sh and run.sh fail at once, with one line saying what to do, when
 * a set is missing or the mirror cannot be reached; a fetched set runs without root through its own
 * loader; nothing in a fetched root points back into the host's /usr.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readlinkSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { PeerMissingError, peerCommand, peersCacheDir, requirePeer } from "../src/peers.mjs";
import { startQsd } from "../src/qsd.mjs";
import { assertVersionAtLeast, parseVersion } from "../src/version.mjs";

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));
const FETCH = here("../fetch.sh");
const RUN = here("../run.sh");

/** Runs `f` with VHOSTKIT_CACHE pointing at a fresh empty directory, removed afterwards. */
async function withEmptyCache<T>(f: (dir: string) => T | Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), "vhostkit-peers-"));
  const saved = process.env.VHOSTKIT_CACHE;
  process.env.VHOSTKIT_CACHE = dir;
  try {
    return await f(dir);
  } finally {
    if (saved === undefined) delete process.env.VHOSTKIT_CACHE;
    else process.env.VHOSTKIT_CACHE = saved;
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A loopback port nothing listens on (bound, then closed). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

test("fetch.sh against an unreachable mirror fails within seconds with one line naming the mirror", async () => {
  const port = await closedPort();
  await withEmptyCache((dir) => {
    const t0 = Date.now();
    const r = spawnSync("sh", [FETCH, "sid"], {
      encoding: "utf8",
      timeout: 60_000,
      env: { ...process.env, VHOSTKIT_CACHE: dir, VHOSTKIT_DEBIAN_MIRROR: `http://127.0.0.1:${port}/debian` },
    });
    assert.equal(r.status, 1, r.stderr);
    assert.ok(Date.now() - t0 < 30_000, `took ${Date.now() - t0} ms`);
    const lines = r.stderr.trim().split("\n");
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0] as string, new RegExp(`cannot read the Debian package lists for 'sid' from http://127\\.0\\.0\\.1:${port}/debian`));
    assert.ok(!existsSync(join(dir, "peers/sid/ready")), "nothing claims to be fetched");
  });
});

test("fetch.sh refuses an unknown set", () => {
  const r = spawnSync("sh", [FETCH, "buster"], { encoding: "utf8", timeout: 10_000 });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /unknown set 'buster'/);
});

test("an unfetched set: run.sh exits 127 at once, peerCommand and startQsd throw PeerMissingError saying what to run", async () => {
  await withEmptyCache(async (dir) => {
    assert.equal(peersCacheDir(), join(dir, "peers"));
    const r = spawnSync("sh", [RUN, "sid", "qemu-system-x86_64", "--version"], {
      encoding: "utf8",
      timeout: 10_000,
      env: { ...process.env, VHOSTKIT_CACHE: dir },
    });
    assert.equal(r.status, 127);
    assert.equal(r.stderr.trim().split("\n").length, 1);
    assert.match(r.stderr, /run sh tools\/peers\/fetch\.sh sid/);
    assert.throws(
      () => peerCommand("bookworm", "qemu-storage-daemon"),
      (e: unknown) =>
        e instanceof PeerMissingError && /QEMU 7\.2 \(Debian 12\) is not fetched into .*: run `sh tools\/peers\/fetch\.sh bookworm`/.test(e.message),
    );
    const t0 = Date.now();
    await assert.rejects(startQsd(), PeerMissingError);
    assert.ok(Date.now() - t0 < 1000, "at once, not after a readiness timeout");
    assert.deepEqual(readdirSync(dir), [], "nothing was created");
  });
  assert.throws(() => requirePeer("wheezy" as "sid"), /unknown peer set 'wheezy'/);
});

/** Every symlink under `dir` that is absolute points inside `root`. */
function absoluteLinksOutside(dir: string, root: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isSymbolicLink()) {
      const t = readlinkSync(p);
      if (t.startsWith("/") && !t.startsWith(`${root}/`)) out.push(`${p} -> ${t}`);
    } else if (e.isDirectory()) out.push(...absoluteLinksOutside(p, root));
  }
  return out;
}

const PROGRAMS = [
  ["bookworm", "qemu-storage-daemon", /version 7\.2\./],
  ["bookworm", "qemu-system-x86_64", /version 7\.2\./],
  ["bookworm", "virtiofsd", /virtiofsd version 7\.2\./],
  // The sid set follows Debian unstable: at least the version the tests were written against.
  ["sid", "qemu-storage-daemon", { label: "version", min: "11.1" }],
  ["sid", "qemu-system-x86_64", { label: "version", min: "11.1" }],
  ["sid", "virtiofsd", { label: "virtiofsd", min: "1.14" }],
  ["sid", "vhost-device-vsock", { label: "vhost-device-vsock", min: "0.3" }],
] as const;

for (const set of ["bookworm", "sid"] as const) {
  const programs = PROGRAMS.filter((p) => p[0] === set);
  test(`the fetched ${set} set runs ${programs.map((p) => p[1]).join(", ")} through its own loader; no link leaves its root`, () => {
    for (const [, program, version] of programs) {
      const [cmd, ...args] = peerCommand(set, program); // fails at once when the runner's fetch gate failed
      const r = spawnSync(cmd as string, [...args, "--version"], { encoding: "utf8", timeout: 10_000 });
      if (set === "bookworm" && program === "virtiofsd" && process.getuid?.() !== 0) {
        // QEMU 7.2's C virtiofsd calls setgroups(2) before anything else, so an ordinary user gets
        // a refusal (through the root's own loader all the same), never its version.
        assert.notEqual(r.status, 0);
        assert.match(r.stderr, /setgroups\(\) failed/, r.stderr);
        continue;
      }
      assert.equal(r.status, 0, `${program}: ${r.stderr}`);
      if (version instanceof RegExp) assert.match(r.stdout, version, program);
      else assertVersionAtLeast(r.stdout, version.label, version.min);
    }
    const root = join(peersCacheDir(), set, "root");
    assert.deepEqual(absoluteLinksOutside(root, root), []);
  });
}

test("minimum-version check: parses after its label, accepts the minimum and newer, refuses older and absent", () => {
  assert.deepEqual(parseVersion("QEMU emulator version 11.1.0 (Debian 1:11.1+ds-1)", "version"), [11, 1, 0]);
  assert.deepEqual(parseVersion("virtiofsd 1.14.0", "virtiofsd"), [1, 14, 0]);
  assert.deepEqual(assertVersionAtLeast("qemu-storage-daemon version 11.2.1", "version", "11.1"), [11, 2, 1]);
  assert.deepEqual(assertVersionAtLeast("virtiofsd 2.0", "virtiofsd", "1.14"), [2, 0, 0]);
  assert.throws(() => assertVersionAtLeast("QEMU emulator version 10.2.0", "version", "11.1"), /10\.2\.0 is older than 11\.1/);
  assert.throws(() => assertVersionAtLeast("virtiofsd 1.9.3", "virtiofsd", "1.14"), /older than 1\.14/);
  assert.throws(() => assertVersionAtLeast("no numbers here", "version", "11.1"), /no version after "version"/);
});

test("the fetched dpdk set runs dpdk-testpmd without hugepages, its vhost and virtio-user drivers loaded from its own root; no link leaves its root", () => {
  const [cmd, ...args] = peerCommand("dpdk", "dpdk-testpmd");
  const dir = mkdtempSync(join(tmpdir(), "vhostkit-dpdk-"));
  try {
    // `-v` prints the version. A driver that was not loaded cannot even parse its --vdev; the
    // virtio-user one, loaded, tries the (absent) socket and says so.
    const r = spawnSync(
      cmd as string,
      [
        ...args,
        "-v",
        "--no-huge",
        "-m",
        "64",
        "--no-shconf",
        "--no-pci",
        "--vdev",
        `net_vhost0,iface=${join(dir, "vhost.sock")}`,
        "--vdev",
        `net_virtio_user0,path=${join(dir, "absent.sock")}`,
        "--",
        "--total-num-mbufs=2048",
        "--no-mlockall",
        "--help",
      ],
      { encoding: "utf8", timeout: 30_000 },
    );
    const out = r.stdout + r.stderr;
    assert.equal(r.status, 0, out);
    assert.match(out, /RTE Version: 'DPDK 22\.11\./);
    assert.doesNotMatch(out, /Unable to parse device/);
    assert.match(out, new RegExp(`\\(${join(dir, "absent.sock")}\\) Failed to setup backend`));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const root = join(peersCacheDir(), "dpdk", "root");
  assert.deepEqual(absoluteLinksOutside(root, root), []);
});
