/**
 * The docs-reference rule on small trees. Paths into docs are spelled `${D}/…` and the names of the
 * external reference files are built from parts, so that this file does not trip the rule it tests
 * when the real repository is linted.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { lint } from "../src/lint.js";
import { githubSlug, headingAnchors } from "../src/markdown.js";
import { docReferences } from "../src/rules/doc-references.js";
import { withTree, type Files } from "./helpers/fixture-tree.js";

const D = "docs";
const PAGE = "# Protocol\n\n## Reply rules\n\ntext\n\n## The `GET_X` reply (v2)\n\n## Reply rules\n\n```md\n## Not a heading\n```\n";

/** Error messages of the docs-reference rule over `files`, as `file:line: message`. */
function errors(files: Files): string[] {
  return withTree({ [`${D}/protocol.md`]: PAGE, ...files }, (root) =>
    lint(root, { rules: [docReferences] }).errors.map((f) => `${f.file}:${f.line ?? ""}: ${f.message}`),
  );
}

describe("GitHub anchors", () => {
  test("lowercase, punctuation dropped, spaces to hyphens, underscores and digits kept", () => {
    assert.equal(githubSlug("The `GET_X` reply (v2)"), "the-get_x-reply-v2");
    assert.equal(githubSlug("Kick, call and err fds"), "kick-call-and-err-fds");
    assert.equal(githubSlug("See [the page](x.md) now"), "see-the-page-now");
  });

  test("repeated headings get -1, -2; headings in code fences and front matter do not count", () => {
    const anchors = headingAnchors(`---\ntitle: x\n---\n${PAGE}`);
    assert.deepEqual([...anchors], ["protocol", "reply-rules", "the-get_x-reply-v2", "reply-rules-1"]);
  });
});

describe("docs/<page>.md#<anchor> references", () => {
  test("an existing page and heading pass, in code comments, strings and prose", () => {
    assert.deepEqual(
      errors({
        "packages/a/src/x.ts": `// see ${D}/protocol.md#reply-rules and ${D}/protocol.md#reply-rules-1\nconst s = "${D}/protocol.md#the-get_x-reply-v2";\n`,
        "packages/a/README.md": `Plain ${D}/protocol.md, and [a link](../../${D}/protocol.md#reply-rules).\n`,
      }),
      [],
    );
  });

  test("a missing heading and a missing page are errors naming the reference", () => {
    assert.deepEqual(errors({ "packages/a/src/x.ts": `/**\n * ${D}/protocol.md#nope\n * ${D}/gone.md#reply-rules\n */\n` }), [
      `packages/a/src/x.ts:2: names ${D}/protocol.md#nope, but ${D}/protocol.md has no heading with the anchor #nope`,
      `packages/a/src/x.ts:3: names ${D}/gone.md#reply-rules, but ${D}/gone.md does not exist`,
    ]);
  });

  test("an anchor inside a code fence is not a heading", () => {
    assert.equal(errors({ "x.ts": `// ${D}/protocol.md#not-a-heading\n` }).length, 1);
  });

  test("relative paths must lead to the root docs/ from where they are written", () => {
    const found = errors({
      "packages/a/README.md": `[wrong](../${D}/protocol.md#reply-rules) and [bare](${D}/protocol.md#reply-rules)\n`,
      "packages/a/src/x.ts": `// ../${D}/protocol.md#reply-rules\n`,
    });
    assert.equal(found.length, 3);
    assert.ok(
      found.every((e) => e.includes("does not lead to the repository's docs/ from packages/a")),
      found.join("\n"),
    );
  });

  test("links between docs pages and same-page anchors are checked too", () => {
    assert.deepEqual(
      errors({
        [`${D}/shmem.md`]: "# Shared memory\n\n[ok](protocol.md#reply-rules), [here](#shared-memory), [bad](./protocol.md#x), [gone](#nowhere)\n",
      }),
      [
        `${D}/shmem.md:3: names ./protocol.md#x, but ${D}/protocol.md has no heading with the anchor #x`,
        `${D}/shmem.md:3: links to #nowhere, but this page has no heading with that anchor`,
      ],
    );
  });

  test("URLs and paths inside other folders named docs are not references", () => {
    assert.deepEqual(errors({ "README.md": `https://example.org/${D}/gone.md#x and vendor/${D}/gone.md\n` }), []);
  });
});

describe("references to material outside the repository", () => {
  const names = [...["PROTOCOL", "SHMEM", "STYLE"].map((n) => `${n}.md`), "PERF-" + "NOTES", "../" + "shared/"];

  test("each is an error outside docs/, one per occurrence", () => {
    const text = names.map((n) => `// see ${n} §4`).join("\n");
    const found = errors({ "packages/a/src/x.ts": text, ".changeset/note.md": `cites ${names[1]} §7\n` });
    assert.equal(found.length, names.length + 1, found.join("\n"));
    assert.ok(
      found.some((e) => e.startsWith(".changeset/note.md:1: cites")),
      "hidden content folders are checked",
    );
    assert.ok(found.every((e) => e.includes("which is not in the repository")));
  });

  test("docs/ itself may name them (a page can say where a fact came from)", () => {
    assert.deepEqual(errors({ [`${D}/history.md`]: `# History\n\nOnce kept in ${names[0]}.\n` }), []);
  });

  test("node_modules, dist and generated docs are not read", () => {
    assert.deepEqual(
      errors({ "node_modules/x/README.md": names[0] as string, "packages/a/dist/x.js": names[0] as string, "docs-out/x.html": names[0] as string }),
      [],
    );
  });
});
