# Sourced by the pipeline scripts: the same steps run on a laptop, in GitHub Actions and in
# GitLab CI. Nothing here knows which CI it is in beyond where a summary goes.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=../scripts/lib/uv.sh
source scripts/lib/uv.sh
STACKS=(dev staging production)
OUT="${PIPELINE_OUT:-$ROOT/.pipeline}"
mkdir -p "$OUT"

# PLATFORM_CLI: an installed `platform` to use instead of the project's environment.
platform() {
  if [ -n "${PLATFORM_CLI:-}" ]; then "$PLATFORM_CLI" "$@"; else "$UV" run --frozen --quiet platform "$@"; fi
}

# Append stdin to the job summary (GitHub Actions), or print it.
summary() {
  if [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then cat >>"$GITHUB_STEP_SUMMARY"; else cat; fi
}

step() { echo "==> $*" >&2; }

# A service or environment name as the CLI accepts it (a DNS label, at most 53 characters),
# checked before it is passed on, so no value can become a flag or split into words.
require_name() {
  local kind="$1" value="$2"
  [[ "$value" =~ ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$ && ${#value} -le 53 ]] \
    || fail "$kind '$value' is not a valid name (lower-case letters, digits and '-')"
}

fail() { echo "error: $1" >&2; exit "${2:-2}"; }

require_pulumi() {
  command -v pulumi >/dev/null 2>&1 \
    || fail "pulumi is not installed (CI installs it with pipelines/install-pulumi; offline, 'uv run pytest tests/infra' runs the same program under mocks)" 3
}
