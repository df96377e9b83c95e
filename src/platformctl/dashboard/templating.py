"""The Jinja2 environment every page renders with, and the one way a page is answered."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates
from starlette.responses import Response

TEMPLATES = Jinja2Templates(directory=Path(__file__).with_name("templates"))


def page(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
    """``name`` rendered with ``context``; a request HTMX sends (``HX-Request``) may get a
    fragment instead, which the template decides from ``partial``."""
    partial = request.headers.get("HX-Request") == "true"
    return TEMPLATES.TemplateResponse(
        request, name, {**context, "partial": partial}, status_code=status
    )
