#!/bin/sh
# The thinkcells kernel: Deno's Jupyter kernel with an import map that maps "thinkcells".
# `deno jupyter` has no --config flag; it reads deno.json from its working directory, which the
# front end sets to the notebook's directory. A notebook that has its own deno.json keeps it.
# Otherwise Deno starts in the project (whose deno.json maps "thinkcells") and cells-lib moves
# the process back to the notebook's directory when it is imported (THINKCELLS_NOTEBOOK_DIR).
# `exec`, so the front end's interrupt and kill signals reach Deno itself.
set -eu
[ $# -eq 1 ] || { echo "usage: launch.sh CONNECTION_FILE" >&2; exit 2; }
project=$(cd "$(dirname "$0")/.." && pwd)
deno="$project/node_modules/.bin/deno"
connection=$(realpath "$1")
dir=$(pwd)
while :; do
  if [ -f "$dir/deno.json" ] || [ -f "$dir/deno.jsonc" ]; then
    exec "$deno" jupyter --kernel --conn "$connection"
  fi
  [ "$dir" = / ] && break
  dir=$(dirname "$dir")
done
THINKCELLS_NOTEBOOK_DIR=$(pwd)
export THINKCELLS_NOTEBOOK_DIR
cd "$project"
exec "$deno" jupyter --kernel --conn "$connection"
