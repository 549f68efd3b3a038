/**
 * Regenerate `fixtures/golden/<dialect>/*.hex` from the hand-written cases in golden-cases.ts.
 * Run from the repository root: `bun packages/wire/test/helpers/write-golden.ts`. Tests never write.
 */
import { mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { DialectName } from "@vhostkit/wire";
import { GOLDEN, frameHex, goldenDir } from "./golden-cases.js";

for (const dialect of Object.keys(GOLDEN) as DialectName[]) {
  const dir = fileURLToPath(goldenDir(dialect));
  mkdirSync(dir, { recursive: true });
  for (const f of readdirSync(dir)) if (f.endsWith(".hex")) rmSync(`${dir}${f}`);
  for (const c of GOLDEN[dialect]) writeFileSync(`${dir}${c.file}.hex`, `${frameHex(c)}\n`);
  process.stdout.write(`${dialect}: ${GOLDEN[dialect].length} frames\n`);
}
