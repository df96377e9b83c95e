# Sourced by the scripts: puts a working `uv` in $UV, installing it when the machine has none.
# Needs only python3 (and, on a bare Debian without venv support, root to apt-get it).
set -euo pipefail

ensure_uv() {
  if command -v uv >/dev/null 2>&1; then
    UV=$(command -v uv)
    return
  fi
  local tools="${PLATFORM_TOOLS_DIR:-$HOME/.local/share/platform-tools}"
  if [ ! -x "$tools/bin/uv" ]; then
    echo "==> installing uv into $tools" >&2
    if ! python3 -m venv "$tools" >/dev/null 2>&1; then
      if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
        rm -rf "$tools"
        python3 -m venv "$tools"
      else
        echo "error: python3 cannot create a virtual environment; install python3-venv (sudo apt-get install python3-venv) and run again" >&2
        exit 3
      fi
    fi
    "$tools/bin/python" -m pip install --quiet --disable-pip-version-check uv
  fi
  UV="$tools/bin/uv"
}

ensure_uv
export UV
