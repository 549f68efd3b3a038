/**
 * Version checks for peers that follow a moving distribution (the `sid` set follows Debian
 * unstable): a test states the oldest version whose behaviour it relies on, not the one exact
 * release that happened to be current when it was written.
 */

/**
 * The first `major.minor[.patch]` in `text` after `label` (e.g. "version", "virtiofsd"), or
 * undefined when there is none.
 */
export function parseVersion(text, label) {
  const at = text.indexOf(label);
  if (at < 0) return undefined;
  const m = /(\d+)\.(\d+)(?:\.(\d+))?/.exec(text.slice(at + label.length));
  return m ? [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)] : undefined;
}

/** Throws unless `text` names a version at least `min` ("11.1", "1.14.0") after `label`. */
export function assertVersionAtLeast(text, label, min) {
  const found = parseVersion(text, label);
  const want = min.split(".").map(Number);
  if (found === undefined) throw new Error(`no version after "${label}" in: ${text.trim().slice(0, 200)}`);
  for (let i = 0; i < 3; i++) {
    const f = found[i] ?? 0;
    const w = want[i] ?? 0;
    if (f > w) return found;
    if (f < w) throw new Error(`${label} ${found.join(".")} is older than ${min}, the oldest this test relies on`);
  }
  return found;
}
