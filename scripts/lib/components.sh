# Sourced by scripts/test: the real components the gate and dashboard tests start on 127.0.0.1.
# As root (CI, a fresh container) they are installed from Debian's packages; otherwise the
# tests that need a missing one fail and print the install command.
ensure_components() {
  local missing=()
  command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
  command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
  # the dashboard's browser tests: Debian's Chromium and the ChromeDriver of the same build
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
  [ "${#missing[@]}" -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "warning: missing ${missing[*]}: the gate tests will fail;" \
      "install with: sudo apt-get install -y ${missing[*]}" >&2
    return 0
  fi
  echo "==> apt-get install ${missing[*]} (for the gate tests)" >&2
  export DEBIAN_FRONTEND=noninteractive
  # the packages start nothing here: tests run their own instances on free ports
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  }
}
