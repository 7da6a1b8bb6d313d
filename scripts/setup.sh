#!/usr/bin/env bash
# Installs what thinkcells needs, idempotently: Debian packages for the Python bridge and the
# notebook server, then the npm dependencies. Fast when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

# chromium: the tests open the headless runner's HTML report in a real browser; python3-onnx:
# torch.onnx export of merged models.
debs=(python3-torch python3-numpy python3-jsonschema python3-pytest jupyter-server python3-ipykernel gcc libc6-dev chromium python3-onnx)
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

# npm: install when node_modules is missing or older than the lock file.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: installing npm dependencies" >&2
  # onnxruntime-node's install script would fetch CUDA binaries from outside the registry;
  # its CPU binaries ship inside the package. `npm install`, not `npm ci`: npm 11 leaves other
  # platforms' optional packages (deno's) out of the lock file and then `npm ci` refuses it;
  # `npm install` installs the locked versions and leaves the lock file as it is.
  ONNXRUNTIME_NODE_INSTALL=skip npm install --no-audit --no-fund --loglevel=error >&2
fi

# The `thinkcells` Jupyter kernel (Deno's kernel with this project's import map); a no-op when
# it is already registered.
node bin/thinkcells.mjs kernel install >&2
