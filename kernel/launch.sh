#!/bin/sh
# The thinkcells kernel: Deno's Jupyter kernel with an import map that maps "thinkcells".
# `deno jupyter` has no --config flag; it reads the nearest deno.json(c) at or above its working
# directory, which the front end sets to the notebook's directory. A notebook that has its own
# deno.json keeps it, unless another user owns it or could have written it (see `unsafe`).
# Otherwise Deno starts in the project (whose deno.json maps "thinkcells") and cells-lib moves
# the process back to the notebook's directory when it is imported (THINKCELLS_NOTEBOOK_DIR).
# `exec`, so the front end's interrupt and kill signals reach Deno itself.
set -eu
[ $# -eq 1 ] || { echo "usage: launch.sh CONNECTION_FILE" >&2; exit 2; }
project=$(cd "$(dirname "$0")/.." && pwd)
deno="$project/node_modules/.bin/deno"
connection=$(realpath "$1")

# Why another user could have put their code in $1 (nothing when none could): they own it, or it
# is writable by others. A sticky bit (/tmp) is no help: it stops others deleting, not planting.
# Group-writable is fine only for the user's private group (Debian's umask 002 makes files so).
unsafe() {
  ls -ldLn -- "$1" | {
    read -r mode _links uid gid _rest
    case $mode in
      ????????w*) echo "$1 is writable by every user"; exit ;;
      ?????w*)
        [ "$gid" = "$(id -g)" ] && [ "$(id -gn)" = "$(id -un)" ] || { echo "$1 is writable by group $gid"; exit; } ;;
    esac
    [ "$uid" = "$(id -u)" ] || [ "$uid" = 0 ] || echo "$1 is owned by another user (uid $uid)"
  }
}

dir=$(pwd)
while [ ! -f "$dir/deno.json" ] && [ ! -f "$dir/deno.jsonc" ] && [ "$dir" != / ]; do dir=$(dirname "$dir"); done
own=no
for config in "$dir/deno.json" "$dir/deno.jsonc"; do
  [ -f "$config" ] || continue
  why=$(unsafe "$dir")
  [ -n "$why" ] || why=$(unsafe "$config")
  if [ -n "$why" ]; then
    echo "thinkcells kernel: ignoring $config: $why, so it may map imports to someone else's code; using this project's import map" >&2
    own=no
    break
  fi
  own=yes
done
[ "$own" = no ] || exec "$deno" jupyter --kernel --conn "$connection"
THINKCELLS_NOTEBOOK_DIR=$(pwd)
export THINKCELLS_NOTEBOOK_DIR
cd "$project"
exec "$deno" jupyter --kernel --conn "$connection"
