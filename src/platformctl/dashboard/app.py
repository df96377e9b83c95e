"""The dashboard's ASGI application: the pages' routers, the static files, the error page."""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.responses import Response
from starlette.staticfiles import StaticFiles

from platformctl.dashboard.site import PageError, Site
from platformctl.dashboard.templating import page
from platformctl.errors import one_line

LOG = logging.getLogger("platformctl.dashboard")

STATIC = Path(__file__).with_name("static")
# Nothing from another host, no inline script; Pico's icons are data: URIs in its CSS.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def create_app(root: Path, *, allowed_hosts: list[str] | None = None) -> FastAPI:
    """The dashboard of the repository at ``root``. ``allowed_hosts`` (the Host headers
    answered) keeps a page served on loopback from being read through DNS rebinding."""
    from platformctl.dashboard.pages import PAGES

    app = FastAPI(title="platform", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.site = Site(root)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for module in PAGES:
        app.include_router(module.router)
    if allowed_hosts is not None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)

    @app.middleware("http")
    async def _headers(request: Request, call_next):  # type: ignore[no-untyped-def]
        response: Response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @app.exception_handler(PageError)
    async def _page_error(request: Request, error: PageError) -> Response:
        return page(request, "error.html", {"message": error.message}, error.status)

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, error: Exception) -> Response:
        # as the CLI says a bug (exit 70): one line here, the traceback in the server's log
        LOG.error("internal error on %s", request.url.path, exc_info=error)
        message = f"internal error: {type(error).__name__}: {error}; see the server's log"
        response = page(request, "error.html", {"message": one_line(message)}, 500)
        response.headers.update(SECURITY_HEADERS)  # outside the middleware that adds them
        return response

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, error: HTTPException) -> Response:
        message = "no such page" if error.status_code == 404 else str(error.detail)
        return page(request, "error.html", {"message": message}, error.status_code)

    return app


def site_of(request: Request) -> Site:
    """The ``Site`` of the application serving ``request`` (a FastAPI dependency)."""
    site: Site = request.app.state.site
    return site
