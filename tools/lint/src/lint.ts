/**
 * The repository lint as a function: every rule over one tree, for the CLI (`main.ts`) and tests.
 * @module
 */
import { resolve } from "node:path";
import { walkFiles, workspaces } from "./files.js";
import type { Finding, LintContext, Rule } from "./finding.js";
import { dependencies } from "./rules/dependencies.js";
import { docReferences } from "./rules/doc-references.js";
import { errorCodes } from "./rules/error-codes.js";
import { fileSize } from "./rules/file-size.js";
import { importCycles } from "./rules/import-cycles.js";
import { libraryCode } from "./rules/library-code.js";
import { testHygiene } from "./rules/test-hygiene.js";

/** Every rule, in the order their findings are reported. */
export const RULES: readonly Rule[] = [dependencies, libraryCode, errorCodes, testHygiene, importCycles, docReferences, fileSize];

/** Options of {@link lint}. */
export interface LintOptions {
  /** Limit the run to this directory (absolute, or relative to `root`); default the whole tree. */
  readonly scope?: string;
  /** Rules to run (default {@link RULES}). */
  readonly rules?: readonly Rule[];
}

/** The outcome of {@link lint}. */
export interface LintReport {
  /** Findings that fail the run. */
  readonly errors: readonly Finding[];
  /** Findings that are printed only. */
  readonly warnings: readonly Finding[];
}

/**
 * Runs the rules over the repository at `root` (the directory holding `packages/`, `docs/` and
 * `tools/lint/dependency-graph.json`). Reads files only.
 * @throws SyntaxError / TypeError when a manifest, tsconfig or the dependency graph is malformed.
 */
export function lint(root: string, options: LintOptions = {}): LintReport {
  const absRoot = resolve(root);
  const scope = resolve(absRoot, options.scope ?? ".");
  const ctx: LintContext = { root: absRoot, scope, files: walkFiles(scope), workspaces: workspaces(absRoot) };
  const findings = (options.rules ?? RULES).flatMap((rule) => rule(ctx));
  return { errors: findings.filter((f) => f.severity === "error"), warnings: findings.filter((f) => f.severity === "warning") };
}
