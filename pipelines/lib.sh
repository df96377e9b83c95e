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

fail() { echo "error: $1" >&2; exit "${2:-2}"; }

require_pulumi() {
  command -v pulumi >/dev/null 2>&1 \
    || fail "pulumi is not installed (CI installs it with pipelines/install-pulumi; offline, 'uv run pytest tests/infra' runs the same program under mocks)" 3
}
