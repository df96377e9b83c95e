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
    fragment instead, which the template decides from ``partial`` (and ``target``: the id of
    the element HTMX swaps, so an error can take its place)."""
    partial = request.headers.get("HX-Request") == "true"
    target = request.headers.get("HX-Target") if partial else None
    response = TEMPLATES.TemplateResponse(
        request, name, {**context, "partial": partial, "target": target}, status_code=status
    )
    # one URL answers the page and its fragment: a cache must keep them apart, and the
    # state shown is the checkout's now
    response.headers["Vary"] = "HX-Request"
    response.headers["Cache-Control"] = "no-cache"
    return response
