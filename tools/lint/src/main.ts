/**
 * Repository lint: the rules that keep the architecture honest and the references true.
 *
 * - Dependencies point one way (wire <- transport <- regions/virtqueue <- fallback <- backend/frontend
 *   <- apps), as `tools/lint/dependency-graph.json` allows; `tsconfig.json` references mirror
 *   `dependencies` exactly.
 * - No import cycles between the source files of a workspace (type-only imports count).
 * - koffi is imported only under `packages/<pkg>/src/sys/`; library sources never call
 *   `process.exit` or `console.*`.
 * - The codes of every exported `…ErrorCode` union are SCREAMING_SNAKE.
 * - Tests use `node:test` (so they run under Bun and Node) and leave no `.only`/`.skip`/`.todo`.
 * - Every `docs/<page>.md#<anchor>` named anywhere names a page and heading that exist; nothing
 *   cites reference material that is not in the repository.
 * - Warning only: source files over 500 lines.
 *
 * Usage: `bun tools/lint/src/main.ts [dir]` (default: the whole repository). Exit 1 on any error.
 * @module
 */
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { formatFinding } from "./finding.js";
import { lint } from "./lint.js";

const root = fileURLToPath(new URL("../../..", import.meta.url));
const report = lint(root, process.argv[2] === undefined ? {} : { scope: resolve(process.cwd(), process.argv[2]) });
for (const f of [...report.errors, ...report.warnings]) console.log(formatFinding(f));
const warned = report.warnings.length === 0 ? "" : ` (${report.warnings.length} warning(s))`;
console.log(report.errors.length === 0 ? `lint: clean${warned}` : `lint: ${report.errors.length} finding(s)${warned}`);
process.exit(report.errors.length === 0 ? 0 : 1);
