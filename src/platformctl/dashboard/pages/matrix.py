"""``GET /``: the services x environments matrix (``platform status`` as a page)."""

from __future__ import annotations

import datetime as dt
import time
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from platformctl.dashboard.app import site_of
from platformctl.dashboard.site import Site
from platformctl.dashboard.templating import page
from platformctl.dashboard.views import MATRIX, matrix_view

router = APIRouter()
# seconds after which a poll swaps the table even if nothing changed: the ages move on
AGE_REFRESH = 600


@router.api_route("/", methods=["GET", "HEAD"])
def matrix(
    request: Request,
    site: Annotated[Site, Depends(site_of)],
    env: Annotated[list[str] | None, Query(description="Only these environments.")] = None,
    seen: Annotated[str | None, Query(description="What a poll already shows.")] = None,
) -> Response:
    """The whole page, or with ``HX-Request`` (polling, Refresh) only the table's fragment;
    ``?env=`` as ``platform status -e`` (an unknown name is a 404 with the CLI's message).
    A poll that already shows the current state gets 204, which HTMX does not swap: swapping
    the same table every 30 s would take the focus from a keyboard or screen-reader user."""
    wanted = [site.environment(name).name for name in env or ()]
    shown = _shown(site)
    if seen == shown and request.headers.get("HX-Request") == "true":
        return Response(status_code=204, headers={"Vary": "HX-Request"})
    view = site.cached(MATRIX, matrix_view)
    query = urlencode([("env", name) for name in wanted])
    here = f"{request.url.path}?{query}" if wanted else request.url.path
    context = {
        "matrix": view.only(wanted) if wanted else view,
        "environments": site.snapshot().repo.environment_names,
        "wanted": wanted,
        # Refresh asks again for what is shown; the poll says what it shows
        "here": here,
        "poll": f"{here}{'&' if wanted else '?'}{urlencode({'seen': shown})}",
        "now": dt.datetime.now(dt.UTC),
    }
    return page(request, "matrix.html", context)


def _shown(site: Site) -> str:
    """What a page rendered now shows: the checkout's state and, since the cells say ages,
    the ten minutes it is in (so ages are brought up to date that often)."""
    return f"{site.version()}.{int(time.time() // AGE_REFRESH)}"
