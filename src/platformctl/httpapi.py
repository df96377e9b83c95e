"""One way to call the HTTP APIs the tool talks to (GitHub, Argo CD, Prometheus, webhooks).

Every failure becomes a ``PlatformError`` that names the endpoint: ``EndpointUnreachable``
when nothing answered (so a gate can fail closed and say which endpoint to check), an
``EnvironmentProblem`` when it answered with an error. httpx is imported on first use.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from platformctl.errors import EnvironmentProblem, InputError

if TYPE_CHECKING:
    import httpx

TIMEOUT_SECONDS = 10.0


class EndpointUnreachable(EnvironmentProblem):
    """Nothing answered at an endpoint (connection refused, DNS, timeout, TLS)."""


class EndpointError(EnvironmentProblem):
    """An endpoint answered with an HTTP error."""


def token_from(variable: str | None, *, purpose: str) -> str | None:
    """A bearer token named by an environment variable (never stored in git)."""
    if not variable:
        return None
    token = os.environ.get(variable)
    if not token:
        raise InputError(f"{purpose} needs a token in ${variable}", hint=f"export {variable}=…")
    return token


class JsonApi:
    """A JSON-over-HTTP API at ``base_url``, with an optional bearer token."""

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = TIMEOUT_SECONDS,
    ) -> None:
        import httpx

        self.name = name
        self.base_url = base_url.rstrip("/")
        merged = {"Accept": "application/json", **(headers or {})}
        if token:
            merged["Authorization"] = f"Bearer {token}"
        self.client: httpx.Client = httpx.Client(
            base_url=self.base_url, headers=merged, timeout=timeout
        )

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """The decoded JSON answer (None for an empty body)."""
        response = self.send(method, path, **kwargs)
        if response.status_code >= 400:
            raise EndpointError(
                f"{self.name} at {self.base_url} answered {response.status_code} to "
                f"{method} {path}: {_message(response)}"
            )
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise EndpointError(
                f"{self.name} at {self.base_url} answered {method} {path} with non-JSON"
            ) from None

    def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        import httpx

        try:
            return self.client.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise EndpointUnreachable(
                f"{self.name} at {self.base_url} unreachable: {_describe(error)}"
            ) from error


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:200] or response.reason_phrase
    if isinstance(body, dict):
        for key in ("message", "error", "errors"):
            if body.get(key):
                return str(body[key])[:200]
    return str(body)[:200]


def _describe(error: Exception) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
