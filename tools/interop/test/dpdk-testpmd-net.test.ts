/**
 * `vhost-user-device net` (the vhostkit virtio-net driver) against DPDK 22.11's testpmd as the
 * vhost-user network port (`net_vhost0`, Debian 12, fetched without root; no hugepages): frames
 * generated, reflected by macswap and checked byte for byte (none corrupted), and testpmd's own
 * counters agree with ours exactly (its TX-dropped are our drops: a receive ring it found full); with rxonly, testpmd receives every frame sent.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { cli } from "./helpers/cli.js";
import { startTestpmd } from "./helpers/testpmd.js";

interface Summary {
  readonly sent: number;
  readonly ok: number;
  readonly corrupt: number;
  readonly foreign: number;
  readonly drops: number;
  readonly txFrames: number;
  readonly rxFrames: number;
  readonly frameSize: number;
  readonly mergeable: boolean;
  readonly failure: string | null;
}

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "vhostkit-dpdk-net-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function gen(socket: string, size: number): Promise<Summary> {
  const r = await cli(["net", "gen", "--socket", socket, "--seconds", "2", "--size", String(size), "--json"], 60_000);
  assert.equal(r.code, 0, r.stderr);
  // A progress line each second on stderr.
  assert.match(r.stderr, /^1\.\ds {2}tx \d+\.\d{3} Mpps \d+\.\d{3} Gbit\/s {2}rx .* drops \d+ {2}corrupt 0$/m);
  return JSON.parse(r.stdout) as Summary;
}

for (const size of [64, 1500]) {
  test(`testpmd macswap reflects ${size}-byte frames: what comes back is intact, counts equal to testpmd's`, { timeout: 90_000 }, async () => {
    const socket = join(dir, `macswap-${size}.sock`);
    const pmd = await startTestpmd({ role: "vhost", socket, forwardMode: "macswap", forwardCpu: 0 });
    let s: Summary;
    try {
      s = await gen(socket, size);
    } catch (e) {
      await pmd.kill();
      throw e;
    }
    const c = await pmd.stop();
    assert.equal(s.failure, null);
    assert.equal(s.frameSize, size);
    assert.equal(s.mergeable, true, "DPDK offers MRG_RXBUF");
    assert.ok(s.sent > 1000, `sent ${s.sent}`);
    assert.equal(s.txFrames, s.sent, "the port took every frame sent");
    assert.equal(c.rxPackets, s.sent, "testpmd received every frame sent");
    // What testpmd could put in our receive ring came back, each one intact (checksums, sequence
    // number, pattern); what it could not is its TX-dropped, and our drops.
    assert.equal(s.rxFrames, c.txPackets);
    assert.equal(s.corrupt, 0);
    assert.equal(s.foreign, 0);
    assert.equal(s.ok, c.txPackets);
    assert.equal(s.drops, c.txDropped);
    // Unthrottled, the generator outruns the receive refills: drops are expected, not a majority of them.
    assert.ok(s.ok > 1000, `back ${s.ok} of ${s.sent}`);
  });
}

test("testpmd rxonly counts exactly the frames sent, and sends none back", { timeout: 90_000 }, async () => {
  const socket = join(dir, "rxonly.sock");
  const pmd = await startTestpmd({ role: "vhost", socket, forwardMode: "rxonly", forwardCpu: 0 });
  let s: Summary;
  try {
    s = await gen(socket, 64);
  } catch (e) {
    await pmd.kill();
    throw e;
  }
  const c = await pmd.stop();
  assert.equal(s.failure, null);
  assert.ok(s.sent > 1000, `sent ${s.sent}`);
  assert.equal(c.rxPackets, s.sent);
  assert.equal(c.rxDropped, 0);
  assert.equal(c.txPackets, 0);
  assert.equal(s.rxFrames, 0);
  assert.equal(s.drops, s.sent, "gen counts what did not come back");
});
