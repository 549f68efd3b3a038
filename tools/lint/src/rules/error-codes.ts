/**
 * One error-code style across the packages: the codes of every exported `…ErrorCode` union are
 * SCREAMING_SNAKE, as the wire, transport, virtqueue and back-end codes always were.
 * @module
 */
import { join, sep } from "node:path";
import { isModuleFile, lineAt, readText, relPath } from "../files.js";
import { error, type Finding, type LintContext } from "../finding.js";

/** The start of an exported error-code type alias: `export type FooErrorCode =` (generic or not). */
const DECLARATION = /\bexport\s+type\s+(\w*ErrorCode)\b(?:\s*<[^=]*>)?\s*=/g;

/** An error code as every package spells it: `BAD_FD`, `EOF`, `TOO_MANY_FDS`. */
const SCREAMING_SNAKE = /^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*$/;

/** A string literal member of a type: its text and its offset in the file. */
interface Literal {
  readonly value: string;
  readonly at: number;
}

/**
 * The quoted string literals of the type that starts at `from`, up to its `;` (or the end of the
 * file); comments are skipped and template literals are not codes. Brackets are not tracked:
 * an error-code union holds literals, and a `;` inside an object type would only end it early.
 */
function literalsOfType(text: string, from: number): Literal[] {
  const out: Literal[] = [];
  let i = from;
  while (i < text.length) {
    const c = text[i];
    if (c === ";") break;
    if (c === "/" && text[i + 1] === "/") {
      const nl = text.indexOf("\n", i);
      i = nl === -1 ? text.length : nl;
    } else if (c === "/" && text[i + 1] === "*") {
      const end = text.indexOf("*/", i + 2);
      i = end === -1 ? text.length : end + 2;
    } else if (c === '"' || c === "'" || c === "`") {
      let j = i + 1;
      while (j < text.length && text[j] !== c) j += text[j] === "\\" ? 2 : 1;
      if (c !== "`") out.push({ value: text.slice(i + 1, j), at: i });
      i = j + 1;
    } else {
      i++;
    }
  }
  return out;
}

/**
 * In the sources (`src/`) of every workspace: each string literal member of an exported type
 * alias whose name ends in `ErrorCode` is SCREAMING_SNAKE (`"IO_ERROR"`, not `"io-error"`), so
 * callers branch on one spelling whichever package threw (docs/style.md#errors).
 */
export function errorCodes(ctx: LintContext): Finding[] {
  const out: Finding[] = [];
  const srcDirs = ctx.workspaces.map((w) => join(w.dir, "src") + sep);
  for (const file of ctx.files) {
    if (!isModuleFile(file) || !srcDirs.some((d) => file.startsWith(d))) continue;
    const text = readText(file);
    if (text === undefined || !text.includes("ErrorCode")) continue;
    const rel = relPath(ctx.root, file);
    for (const m of text.matchAll(DECLARATION)) {
      const name = m[1] as string;
      for (const lit of literalsOfType(text, (m.index ?? 0) + m[0].length)) {
        if (!SCREAMING_SNAKE.test(lit.value)) {
          out.push(
            error(rel, `${name} has the code "${lit.value}": error codes are SCREAMING_SNAKE (e.g. "${screamingSnake(lit.value)}")`, lineAt(text, lit.at)),
          );
        }
      }
    }
  }
  return out;
}

/** `io-error` / `ioError` / `io error` as `IO_ERROR` (the suggestion in the finding). */
export function screamingSnake(code: string): string {
  return code
    .replace(/([a-z0-9])([A-Z])/g, "$1_$2")
    .replace(/[^A-Za-z0-9]+/g, "_")
    .replace(/^_+|_+$/g, "")
    .toUpperCase();
}
