"""``GET /``: the services x environments matrix (``platform status`` as a page)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from platformctl.dashboard.app import site_of
from platformctl.dashboard.site import Site
from platformctl.dashboard.templating import page
from platformctl.dashboard.views import MATRIX, matrix_view

router = APIRouter()


@router.api_route("/", methods=["GET", "HEAD"])
def matrix(request: Request, site: Annotated[Site, Depends(site_of)]) -> Response:
    """The whole page, or with ``HX-Request`` (polling, Refresh) only the table's fragment."""
    view = site.cached(MATRIX, matrix_view)
    return page(request, "matrix.html", {"matrix": view, "now": dt.datetime.now(dt.UTC)})
