#!/usr/bin/env bash
# Usage: tools/scaffold/new-package.sh <name> "<one-line description>" [dep ...]
#
# Creates packages/<name>, a public @vhostkit library that passes lint, pack-check and docs at once:
# manifest (shared fields taken from an existing library, version of the `fixed` group), tsconfig
# with references mirroring the dependencies, tsconfig.test.json, src/index.ts with TSDoc, a first
# node:test test, a README; and registers it in the root tsconfig.json, the `fixed` group of
# .changeset/config.json and tools/lint/dependency-graph.json (allowed dependencies = the deps
# given). Works on the repository this script lives in (or on a copy of it). Needs Node >= 20.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
exec "${NODE:-node}" "$here/new-package.mjs" "$root" "$@"
