/**
 * The verdict of one conformance check (`vhost-user-device check`).
 * @module
 */

/** One named check and its verdict. */
export interface CheckResult {
  /** Stable check name, e.g. `"handshake order"`. */
  readonly name: string;
  /** `pass`, `fail`, or `skip` (not applicable to this back-end or device type). */
  readonly status: "pass" | "fail" | "skip";
  /** Why, naming the values seen (hex for feature words). */
  readonly reason: string;
}
