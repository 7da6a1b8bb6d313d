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

# The Jupyter server extension that serves plotly.js to chart outputs (kernel/server-extension/):
# on the venv's Python path, and enabled for every Jupyter server the venv runs (JupyterLab's
# too), as an editable install plus `jupyter server extension enable --sys-prefix` would do.
write_if_changed() { # FILE TEXT
  [ "$(cat "$1" 2>/dev/null)" = "$2" ] && return
  mkdir -p "$(dirname "$1")"
  printf '%s\n' "$2" > "$1.tmp" && mv "$1.tmp" "$1"
}
site_packages=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
write_if_changed "$site_packages/thinkcells_jupyter.pth" "$PWD/kernel/server-extension"
write_if_changed .venv/etc/jupyter/jupyter_server_config.d/thinkcells_jupyter.json \
  '{ "ServerApp": { "jpserver_extensions": { "thinkcells_jupyter": true } } }'

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
