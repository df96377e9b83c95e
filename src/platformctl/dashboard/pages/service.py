"""``GET /services/{name}``: a service's history in every environment (``platform history``)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from platformctl.dashboard.app import site_of
from platformctl.dashboard.site import Site
from platformctl.dashboard.templating import page
from platformctl.dashboard.views import service_key, service_view

router = APIRouter()


@router.api_route("/services/{name}", methods=["GET", "HEAD"])
def service(name: str, request: Request, site: Annotated[Site, Depends(site_of)]) -> Response:
    """404 with the CLI's message (and its closest name) for a service the model lacks."""
    known = site.service(name)
    view = site.cached(service_key(known), lambda snapshot: service_view(snapshot, known))
    return page(request, "service.html", {"view": view, "now": dt.datetime.now(dt.UTC)})
