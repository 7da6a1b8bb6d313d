#!/usr/bin/env bash
# Compiles cells-lib/ into dist/ (JavaScript + .d.ts, tsconfig.build.json): what Node and tslab
# import as `thinkcells` (package.json "exports"). Deno, tsx and vitest run the sources. Skipped
# when no source, deletion or config is newer than the last build, so set-up and tests can run it every time.
set -euo pipefail
cd "$(dirname "$0")/.."

stamp=dist/.built
if [ -f "$stamp" ] && [ -z "$(find cells-lib tsconfig.json tsconfig.build.json -newer "$stamp" -print -quit)" ]; then
  exit 0
fi
echo "build: compiling cells-lib/ into dist/" >&2
# Built beside dist/ and moved in whole: files of deleted sources do not linger, and a failed
# build leaves the last good one.
out=dist.partial.$$
trap 'rm -rf "$out"' EXIT
mkdir "$out"
# The stamp first: a source saved while tsc runs is newer than it, so the next run rebuilds.
touch "$out/.built"
# By path: node_modules/.bin/tsc may be the TypeScript 5.0 that tslab bundles (both packages install a `tsc`).
node node_modules/typescript/bin/tsc -p tsconfig.build.json --outDir "$out"
rm -rf dist
mv "$out" dist
