"""A thin adapter of Prometheus's HTTP API: one instant query, one number."""

from __future__ import annotations

import datetime as dt
import math

from platformctl.httpapi import EndpointError, JsonApi, token_from
from platformctl.model import Endpoint


class Prometheus:
    def __init__(self, endpoint: Endpoint) -> None:
        token = token_from(endpoint.token_env, purpose="Prometheus")
        self.api = JsonApi("Prometheus", endpoint.url, token=token)

    def value(self, query: str, at: dt.datetime | None = None) -> float | None:
        """The query's single value (None when it has no data, or NaN).

        A query that returns several series is an error: an objective must aggregate.
        """
        params = {"query": query, **({"time": f"{at.timestamp():.3f}"} if at else {})}
        body = self.api.call("GET", "/api/v1/query", params=params)
        data = (body.get("data") if isinstance(body, dict) else None) or {}
        kind, result = data.get("resultType"), data.get("result") or []
        if kind == "scalar":
            number = float(result[1])
        elif kind == "vector":
            if not result:
                return None
            if len(result) > 1:
                raise EndpointError(
                    f"Prometheus query returned {len(result)} series, not one: {query}",
                    hint="aggregate it (sum, max, histogram_quantile) in pipeline.yaml",
                )
            number = float(result[0]["value"][1])
        else:
            raise EndpointError(f"Prometheus answered a {kind} to an instant query")
        return None if math.isnan(number) else number
