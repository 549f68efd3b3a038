/**
 * The `vhost-user-device` CLI against QEMU 7.2's qemu-storage-daemon (Debian 12, fetched without
 * root by tools/peers/fetch.sh): probe --json and its tables, blk write/read/id, check, and the
 * exit codes of usage errors and back-end failures.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { cli as runCli } from "./helpers/cli.js";
import { userfaultfdAvailable } from "@vhostkit/peers/peers";
import { startQsd, type QsdHandle } from "@vhostkit/peers/qsd";
import { ProtocolFeature } from "@vhostkit/wire";

/** Runs the CLI with these arguments (a deadline kills a hung run). */
const cli = (...args: string[]) => runCli(args);

let qsd: QsdHandle;
let dir: string;
before(async () => {
  qsd = await startQsd({ sizeBytes: 1024 * 1024 });
  dir = await mkdtemp(join(tmpdir(), "vhostkit-cli-"));
});
after(async () => {
  await qsd.stop();
  await rm(dir, { recursive: true, force: true });
});

describe("vhost-user-device against qemu-storage-daemon 7.2", () => {
  test("probe --json prints exactly the documented keys and qsd's values", async () => {
    const r = await cli("probe", "--socket", qsd.socketPath, "--json");
    assert.equal(r.code, 0, r.stderr);
    const o = JSON.parse(r.stdout) as Record<string, unknown>;
    assert.deepEqual(
      Object.keys(o).sort(),
      [
        "config",
        "configFields",
        "configStatus",
        "dialect",
        "featureNames",
        "features",
        "maxMemSlots",
        "protocolFeatureNames",
        "protocolFeatures",
        "queueNum",
        "shmem",
      ].sort(),
    );
    assert.equal(o.configStatus, "discovered", "qsd refuses 256 bytes: the size was searched");
    assert.equal(o.configFields, null, "no --device-type, no fields");
    assert.equal(o.features, "0x175007e46");
    // PAGEFAULT (bit 8) only where qsd may open a userfaultfd; the other bits do not depend on who runs it.
    const pageFault = userfaultfdAvailable() ? ProtocolFeature.PAGEFAULT : 0n;
    assert.equal(o.protocolFeatures, `0x${(0x8e2bn | pageFault).toString(16)}`);
    assert.equal(o.queueNum, 1);
    assert.equal(o.maxMemSlots, 32);
    assert.equal(typeof o.config, "string");
    assert.equal((o.config as string).length, 120, "60 bytes of config as hex");
    assert.equal(Buffer.from(o.config as string, "hex").readBigUInt64LE(0), 2048n);
    assert.deepEqual(o.shmem, []);
    assert.equal(o.dialect, "upstream");
    assert.ok((o.featureNames as string[]).includes("VERSION_1"));
    assert.ok((o.protocolFeatureNames as string[]).includes("REPLY_ACK"));
  });

  test("probe prints readable tables with the decoded blk config", async () => {
    const r = await cli("probe", "--socket", qsd.socketPath, "--device-type", "blk");
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /features\s+0x175007e46/);
    assert.match(r.stdout, /capacity\s+2048 sectors/);
    assert.match(r.stdout, /shared memory regions\n\s+\(none\)/);
  });

  test("blk --write then --read round-trips; --id; reading past the end exits 1 with IOERR", async () => {
    const input = join(dir, "in.bin");
    const output = join(dir, "out.bin");
    const data = Buffer.alloc(1024);
    for (let i = 0; i < data.length; i++) data[i] = (i * 13 + 1) & 0xff;
    await writeFile(input, data);
    const w = await cli("blk", "--socket", qsd.socketPath, "--write", "100", "--in", input, "--json");
    assert.equal(w.code, 0, w.stderr);
    assert.deepEqual(JSON.parse(w.stdout), { op: "write", sector: 100, count: 2, bytes: 1024 });
    const rd = await cli("blk", "--socket", qsd.socketPath, "--read", "100:2", "--out", output);
    assert.equal(rd.code, 0, rd.stderr);
    assert.deepEqual(await readFile(output), data);
    const image = await readFile(join(qsd.dir, "disk.raw"));
    assert.deepEqual(image.subarray(100 * 512, 102 * 512), data);
    const id = await cli("blk", "--socket", qsd.socketPath, "--id", "--json");
    assert.equal(JSON.parse(id.stdout).id, "vhost_user_blk");
    const past = await cli("blk", "--socket", qsd.socketPath, "--read", "2048", "--out", output);
    assert.equal(past.code, 1);
    assert.match(past.stderr, /^vhost-user-device: .*IOERR\n$/);
  });

  test("check is green against qsd and --verbose traces every message", async () => {
    const r = await cli("check", "--socket", qsd.socketPath, "--device-type", "blk", "--json", "--verbose");
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const o = JSON.parse(r.stdout) as { ok: boolean; checks: { name: string; status: string }[] };
    assert.equal(o.ok, true);
    assert.ok(o.checks.length >= 8);
    assert.match(r.stderr, /\[main {3}\] -> GET_FEATURES flags=0x1 size=0 fds=0/);
    assert.match(r.stderr, /<- SET_BACKEND_REQ_FD flags=0x5 size=8 fds=0/);
  });

  test("usage errors exit 2, back-end failures exit 1 with one line on stderr", async () => {
    for (const args of [
      ["blk", "--socket", qsd.socketPath],
      ["probe"],
      ["probe", "--socket", "x", "--dialect", "nope"],
      ["rng", "--socket", "x", "--bytes", "-3"],
      ["nosuch"],
      ["blk", "--socket", qsd.socketPath, "--read", "18446744073709551616", "--out", join(dir, "never")],
    ]) {
      const r = await cli(...args);
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
    }
    const missing = await cli("probe", "--socket", join(dir, "no.sock"));
    assert.equal(missing.code, 1);
    assert.equal(missing.stderr.split("\n").filter((l) => l.length > 0).length, 1, missing.stderr);
    const help = await cli("blk", "--help");
    assert.equal(help.code, 0);
    assert.match(help.stdout, /--read <sector\[:count\]>/);
  });
});
