"""One module per page, each with its ``router``; ``PAGES`` is what the application serves."""

from __future__ import annotations

from types import ModuleType

from platformctl.dashboard.pages import findings, matrix, metrics, plan, service

PAGES: tuple[ModuleType, ...] = (
    matrix,
    service,
    plan,
    findings,
    metrics,
)
