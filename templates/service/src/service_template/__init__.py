"""A FastAPI service that meets the platform's contract: probes, metrics, traces, logs."""
