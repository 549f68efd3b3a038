/**
 * The GPU sample under the real Linux virtio-gpu driver, 2D: Debian 12's Linux (`virtio_gpu` over
 * `virtio_pci`) in QEMU 11.1 (TCG) drives vhostkit-gpu as `vhost-user-test-device-pci,virtio-id=16`.
 * The driver binds, reads the config, the capset, the EDID and the display info (the EDID's one
 * mode is the connector's only mode), and its fbdev console draws
 * text on the scanout (2D resource with guest backing, SET_SCANOUT, TRANSFER_TO_HOST_2D,
 * RESOURCE_FLUSH); a static guest program then shows a known pattern in a KMS dumb buffer, and the
 * back-end's PNG screenshot of that resource must equal it pixel for pixel. The console's screenshot
 * is kept in the OS temp dir (path printed) for a person to look at.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, mkdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { peersCacheDir } from "@vhostkit/peers/peers";
import { withDeadline } from "./helpers/processes.js";
import { consoleText, decodePng, DISPLAY, patternPixel, withGpuGuest, type GpuEvent } from "./helpers/gpu-guest.js";

const { width: W, height: H } = DISPLAY;

// Kernel messages stay off the serial console (dmesg -n 1) so that each line the test waits for is
// whole. The console text goes to tty1, the VT the fbdev console shows. The guest powers off right
// after the script: its last line is short and follows a drain of the serial console.
const SCRIPT = `
dmesg -n 1
dmesg | grep -E '\\[drm\\]' | sed 's/^/VHOSTKIT-DMESG /'
for f in /sys/class/drm/card0-*; do
  echo "VHOSTKIT-CONNECTOR $(cat $f/status) modes $(cat $f/modes | tr '\\n' ' ')"
  echo "VHOSTKIT-EDID $(wc -c < $f/edid) $(dd if=$f/edid bs=1 skip=77 count=12 2>/dev/null)"
done
{
  echo "vhostkit-gpu: Linux $(uname -r) virtio_gpu on a vhost-user back-end"
  echo "(QEMU 11.1 vhost-user-test-device-pci, virtio-id=16)"
  echo
  dmesg | grep -E '\\[drm\\]' | sed 's/^\\[[ 0-9.]*\\] //'
  echo
  echo "fb0: $(cat /sys/class/graphics/fb0/name), $(cat /sys/class/graphics/fb0/virtual_size | tr , x), stride $(cat /sys/class/graphics/fb0/stride)"
  for f in /sys/class/drm/card0-*; do echo "$(basename $f): $(cat $f/status), modes: $(cat $f/modes | tr '\\n' ' ')"; done
  for f in /sys/class/drm/card0-*/edid; do echo "EDID: $(wc -c < $f) bytes, monitor name \\"$(dd if=$f bs=1 skip=77 count=12 2>/dev/null)\\""; done
} > /dev/tty1
echo VHOSTKIT-CONSOLE-WRITTEN
/bin/virtio-gpu-guest scanout ${W} ${H}
echo VHOSTKIT-WAITING-FOR-HOST
read -t 90 reply
/bin/virtio-gpu-guest drain
echo "VHOSTKIT-HOST-SAID $reply"
`;

/** The screenshot events of the back-end, in order. */
const screenshots = (events: readonly GpuEvent[]) => events.filter((e) => e.event === "screenshot");

test("Linux 6.1 virtio_gpu in QEMU 11.1 on vhostkit-gpu: console on the scanout, a KMS dumb buffer's pattern in the back-end's PNG pixel for pixel", {
  timeout: 110_000,
}, async (t) => {
  await withGpuGuest({ name: "vhostkit-linux-gpu-2d", script: SCRIPT }, async (g) => {
    await withDeadline(g.qemu.line("VHOSTKIT-WAITING-FOR-HOST"), 90_000, "the guest to show its pattern");
    const shown = g.qemu.lines.find((l) => l.startsWith("VHOSTKIT-SCANOUT "));
    assert.ok(shown !== undefined, consoleText(g));
    const patternId = Number(/resource (\d+)/.exec(shown)?.[1]);
    assert.match(shown, new RegExp(`resource \\d+ ${W}x${H} pitch ${W * 4}$`));

    // The pattern's flushes, then the console's again: closing the DRM file gives the display back
    // to the fbdev console, which flushes its whole buffer.
    const pattern = await withDeadline(
      g.gpu.line((l) => l.includes('"event":"screenshot"') && l.includes(`"resourceId":${patternId},`)),
      20_000,
      "a screenshot of the pattern",
    );
    const afterPattern = (l: string) =>
      l.includes('"event":"screenshot"') && !l.includes(`"resourceId":${patternId},`) && g.gpu.lines.indexOf(l) > g.gpu.lines.indexOf(pattern);
    const consoleShot = await withDeadline(g.gpu.line(afterPattern), 20_000, "the console's screenshot after the pattern");
    g.qemu.send("done");
    await withDeadline(g.qemu.line("VHOSTKIT-HOST-SAID done"), 30_000, "the guest to read the host's reply");
    assert.equal(await withDeadline(g.qemu.exited, 20_000, "QEMU to exit after the guest powered off"), 0, consoleText(g));
    await withDeadline(g.gpu.line('"event":"reset"'), 20_000, "vhostkit-gpu to reset");

    // The driver saw what the device offers.
    const log = consoleText(g);
    assert.ok(!g.qemu.lines.some((l) => l.startsWith("VHOSTKIT-GUEST-INSMOD-FAILED") || l.startsWith("VHOSTKIT-FAIL")), log);
    assert.ok(
      g.qemu.lines.some((l) => l.endsWith("[drm] features: +virgl +edid +resource_blob +host_visible")),
      log,
    );
    assert.ok(
      g.qemu.lines.some((l) => l.endsWith("[drm] features: +context_init")),
      log,
    );
    assert.ok(
      g.qemu.lines.some((l) => l.endsWith("[drm] cap set 0: id 30, max-version 1, max-size 16")),
      log,
    );
    assert.ok(
      g.qemu.lines.some((l) => /\[drm\] Host memory window: 0x[0-9a-f]+ \+0x4000000$/.test(l)),
      log,
    );
    assert.ok(g.qemu.lines.includes(`VHOSTKIT-CONNECTOR connected modes ${W}x${H} `), `the EDID's one mode\n${log}`);
    assert.ok(g.qemu.lines.includes("VHOSTKIT-EDID 128 vhostkit-gpu"), `the driver holds the back-end's EDID (its monitor name descriptor)\n${log}`);

    // Every command the driver sent succeeded.
    const events = g.events();
    const commands = events.filter((e) => e.event === "command");
    assert.deepEqual(
      commands.filter((e) => String(e.resp).startsWith("ERR")),
      [],
      "no command refused",
    );
    for (const cmd of [
      "GET_CAPSET_INFO",
      "GET_EDID",
      "GET_DISPLAY_INFO",
      "RESOURCE_CREATE_2D",
      "RESOURCE_ATTACH_BACKING",
      "CTX_CREATE",
      "CTX_ATTACH_RESOURCE",
      "SET_SCANOUT",
      "TRANSFER_TO_HOST_2D",
      "RESOURCE_FLUSH",
    ]) {
      assert.ok(
        commands.some((e) => e.cmd === cmd),
        `the driver sent ${cmd}`,
      );
    }
    assert.ok(
      commands.some((e) => e.cmd === "SET_SCANOUT" && e.resourceId === patternId),
      "the pattern's resource was set as the scanout",
    );

    // The pattern, pixel for pixel (every flush of it).
    const shots = screenshots(events);
    const patternShots = shots.filter((e) => e.resourceId === patternId);
    assert.ok(patternShots.length >= 1);
    for (const s of patternShots) {
      const img = decodePng(readFileSync(String(s.file)));
      assert.deepEqual([img.width, img.height], [W, H]);
      let bad = 0;
      let first = "";
      for (let y = 0; y < H; y++) {
        for (let x = 0; x < W; x++) {
          const p = (y * W + x) * 4;
          const want = patternPixel(x, y);
          const got = ((img.rgba[p] as number) << 16) | ((img.rgba[p + 1] as number) << 8) | (img.rgba[p + 2] as number);
          if (got !== want || img.rgba[p + 3] !== 255) {
            if (bad++ === 0) first = `(${x}, ${y}): 0x${got.toString(16)} alpha ${img.rgba[p + 3]}, want 0x${want.toString(16)}`;
          }
        }
      }
      assert.equal(bad, 0, `${s.file}: ${bad} pixels differ from the guest's pattern, first at ${first}`);
    }

    // The console: a 640x480 frame of the fbdev resource with text on it, kept for a person.
    const consoleEvent = JSON.parse(consoleShot) as GpuEvent;
    const img = decodePng(readFileSync(String(consoleEvent.file)));
    assert.deepEqual([img.width, img.height], [W, H]);
    let lit = 0;
    for (let p = 0; p < img.rgba.length; p += 4) if ((img.rgba[p] as number) + (img.rgba[p + 1] as number) + (img.rgba[p + 2] as number) > 300) lit++;
    assert.ok(lit > 2000, `the console shows text (${lit} light pixels)`);
    // Kept where the running user can always write it (its vhostkit cache), not at a shared fixed path.
    const artifacts = join(dirname(peersCacheDir()), "artifacts");
    mkdirSync(artifacts, { recursive: true });
    const kept = join(artifacts, "linux-gpu-console.png");
    copyFileSync(String(consoleEvent.file), kept);
    t.diagnostic(`guest console screenshot: ${kept}`);
  });
});
