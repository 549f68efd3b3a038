#!/usr/bin/env bash
# Usage: tools/scaffold/new-package.sh <name> "<one-line description>" [dep ...]
# Creates packages/<name> with the manifest, tsconfigs and README layout every library shares.
set -euo pipefail
name=$1; desc=$2; shift 2
dir=packages/$name
mkdir -p "$dir/src" "$dir/test"
deps=""; refs=""
for d in "$@"; do
  deps="$deps\"@vhostkit/$d\": \"workspace:*\","
  refs="$refs{ \"path\": \"../$d\" },"
done
deps=${deps%,}; refs=${refs%,}
cat > "$dir/package.json" <<JSON
{
  "name": "@vhostkit/$name",
  "version": "0.1.0",
  "description": "$desc",
  "license": "Apache-2.0",
  "type": "module",
  "sideEffects": false,
  "engines": { "node": ">=20", "bun": ">=1.1" },
  "repository": { "type": "git", "url": "git+https://github.com/vhostkit/vhostkit.git", "directory": "$dir" },
  "exports": {
    ".": { "types": "./dist/index.d.ts", "default": "./dist/index.js" },
    "./package.json": "./package.json",
    "./internal/*": null
  },
  "main": "./dist/index.js",
  "types": "./dist/index.d.ts",
  "files": ["dist", "src", "!src/**/*.test.ts", "README.md"],
  "scripts": {
    "build": "tsc -b",
    "typecheck": "tsc -p tsconfig.test.json",
    "lint": "bun ../../tools/lint/src/main.ts .",
    "test": "bun test",
    "pack-check": "bun ../../tools/pack-check/src/main.ts ."
  },
  "dependencies": { $deps },
  "publishConfig": { "access": "public" }
}
JSON
cat > "$dir/tsconfig.json" <<JSON
{
  "extends": "../../tsconfig.base.json",
  "compilerOptions": { "rootDir": "src", "outDir": "dist", "tsBuildInfoFile": "dist/.tsbuildinfo" },
  "include": ["src/**/*.ts"],
  "exclude": ["src/**/*.test.ts"],
  "references": [ $refs ]
}
JSON
cat > "$dir/tsconfig.test.json" <<JSON
{
  "extends": "../../tsconfig.base.json",
  "compilerOptions": { "composite": false, "noEmit": true, "types": ["bun-types"], "rootDir": "." },
  "include": ["src/**/*.ts", "test/**/*.ts"]
}
JSON
echo "created $dir"
