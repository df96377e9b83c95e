"""``GET /``: the services x environments matrix (``platform status`` as a page)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from platformctl.dashboard.app import site_of
from platformctl.dashboard.site import Site
from platformctl.dashboard.templating import page
from platformctl.dashboard.views import MATRIX, matrix_view

router = APIRouter()


@router.api_route("/", methods=["GET", "HEAD"])
def matrix(
    request: Request,
    site: Annotated[Site, Depends(site_of)],
    env: Annotated[list[str] | None, Query(description="Only these environments.")] = None,
) -> Response:
    """The whole page, or with ``HX-Request`` (polling, Refresh) only the table's fragment;
    ``?env=`` as ``platform status -e`` (an unknown name is a 404 with the CLI's message)."""
    wanted = [site.environment(name).name for name in env or ()]
    view = site.cached(MATRIX, matrix_view)
    context = {
        "matrix": view.only(wanted) if wanted else view,
        "environments": site.snapshot().repo.environment_names,
        "wanted": wanted,
        # polling and Refresh ask again for what is shown
        "here": str(request.url.replace(scheme="", netloc="")),
        "now": dt.datetime.now(dt.UTC),
    }
    return page(request, "matrix.html", context)
