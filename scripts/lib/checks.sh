# Sourced by scripts/test and pipelines/pull-request: the checks themselves, defined once, so
# the quickstart's test command and the pull-request gate cannot drift apart. Needs $UV.

check_lint() {
  "$UV" run --frozen ruff check .
  "$UV" run --frozen ruff format --check .
}

check_types() { "$UV" run --frozen mypy; }

# Arguments are passed to pytest. Exit 5 (no tests collected) is a failure, never a pass.
# One worker per core (pytest-xdist), each test file on one worker so that a file's fixtures
# (a cloned repository, a started registry) are made once; PYTEST_WORKERS=0 runs in-process.
check_tests() {
  local status=0
  "$UV" run --frozen pytest -n "${PYTEST_WORKERS:-auto}" --dist loadfile \
    --cov --cov-report=term "$@" || status=$?
  if [ "$status" -eq 5 ]; then
    echo "error: pytest collected no tests" >&2
    return 1
  fi
  return "$status"
}
