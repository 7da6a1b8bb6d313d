#!/usr/bin/env bash
# Installs what thinkcells needs, idempotently: a few Debian packages, the Python environment
# (.venv: the bridge, the notebook server, the test oracles), then the npm dependencies. Fast when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian: a C compiler (the native decode step, compiled on first use), chromium (the tests open
# the headless runner's HTML report in a real browser) and venv for the Python environment below.
debs=(gcc libc6-dev chromium python3-venv)
missing=()
for pkg in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}" >&2
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "setup: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
    sudo="sudo"
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

# Python: the project's virtual environment, from PyPI, pinned in gpu-bridge/requirements.txt.
# Reinstalled only when that file changed since the last complete install (the stamp is written
# last, so an interrupted install is retried).
requirements=gpu-bridge/requirements.txt
stamp=.venv/.requirements.txt
if ! [ -x .venv/bin/python ] || ! cmp -s "$requirements" "$stamp"; then
  # Python 3.11 where there is one: the pinned CPU torch is a cp311 wheel on these machines, and
  # pip would fetch a multi-GB CUDA build for another Python.
  base_python=$(command -v python3.11 || command -v python3)
  echo "setup: installing the Python environment (.venv, $($base_python --version)) from $requirements" >&2
  [ -x .venv/bin/python ] || "$base_python" -m venv .venv
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$requirements" >&2
  cp "$requirements" "$stamp"
fi

# npm: install when node_modules is missing or older than the lock file.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: installing npm dependencies" >&2
  # onnxruntime-node's install script would fetch CUDA binaries from outside the registry;
  # its CPU binaries ship inside the package. `npm install`, not `npm ci`: npm 11 leaves other
  # platforms' optional packages (deno's) out of the lock file and then `npm ci` refuses it;
  # `npm install` installs the locked versions and leaves the lock file as it is.
  ONNXRUNTIME_NODE_INSTALL=skip npm install --no-audit --no-fund --loglevel=error >&2
fi

# The library's JavaScript build (dist/) for Node and tslab; a no-op when it is newer than the sources.
bash scripts/build.sh >&2

# The `thinkcells` Jupyter kernel (Deno's kernel with this project's import map); a no-op when
# it is already registered.
node bin/thinkcells.mjs kernel install >&2
