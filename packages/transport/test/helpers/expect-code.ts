/** Test helper: assert that a promise rejects with a TransportError of a given code (and kind). */
import assert from "node:assert/strict";
import { TransportError } from "../../src/index.js";

/** Awaits `p`, which must reject with a TransportError `code` (and `kind` when given); returns the error. */
export async function expectCode(p: Promise<unknown>, code: string, kind?: string): Promise<TransportError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof TransportError, String(err));
    assert.equal(err.code, code);
    if (kind !== undefined) assert.equal(err.kind, kind);
    return err;
  }
  assert.fail(`expected ${code}`);
}
