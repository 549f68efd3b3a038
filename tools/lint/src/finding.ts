/**
 * What a lint rule reports, and what every rule is given.
 * @module
 */
import type { Workspace } from "./files.js";

/** One problem found: an error fails the lint, a warning is printed only. */
export interface Finding {
  /** `error` fails the run (exit 1); `warning` does not. */
  readonly severity: "error" | "warning";
  /** The file or directory concerned, relative to the repository root with `/` separators. */
  readonly file: string;
  /** 1-based line in `file`, when the finding is about one place in it. */
  readonly line?: number;
  /** What is wrong, in one line. */
  readonly message: string;
}

/** What a rule gets: the tree to check and the part of it in scope. */
export interface LintContext {
  /** Absolute repository root (where `packages/`, `docs/` and `tools/lint/` live). */
  readonly root: string;
  /** Absolute directory the run is limited to (the root, or one workspace). */
  readonly scope: string;
  /** Every file in scope (see `walkFiles`), absolute, sorted. */
  readonly files: readonly string[];
  /** Every workspace of the repository (rules filter by scope themselves). */
  readonly workspaces: readonly Workspace[];
}

/** A lint rule: reads the tree, never writes, returns its findings. */
export type Rule = (ctx: LintContext) => Finding[];

/** An error finding for `file` (relative path), at `line` when given. */
export function error(file: string, message: string, line?: number): Finding {
  return line === undefined ? { severity: "error", file, message } : { severity: "error", file, line, message };
}

/** A warning finding for `file` (relative path), at `line` when given. */
export function warning(file: string, message: string, line?: number): Finding {
  return line === undefined ? { severity: "warning", file, message } : { severity: "warning", file, line, message };
}

/** How a finding is printed: `file[:line]: message`, prefixed with `warning: ` for warnings. */
export function formatFinding(f: Finding): string {
  return `${f.severity === "warning" ? "warning: " : ""}${f.file}${f.line === undefined ? "" : `:${f.line}`}: ${f.message}`;
}
