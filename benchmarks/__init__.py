"""The performance harness: a synthetic fleet, and the platform's commands timed against the
usual tools doing the same work (``uv run python -m benchmarks``)."""
