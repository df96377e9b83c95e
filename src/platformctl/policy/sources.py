"""Where a finding's value comes from: the values file, line and key that set it.

A service's values are layered as Argo CD layers them (``environments/<env>/<svc>.yaml`` over
``environments/base/<svc>.yaml`` over ``charts/service/values.yaml``), so the value to fix is
in the highest layer that sets the key. A check maps to a chart value only where one value
decides it (an image's digest, a pull policy, a replica count); for the rest (a template's
own fields, a finding that several values could cure) nothing is added rather than a guess.
Found after the caches (a moved value or a new comment line changes the answer, not the
verdict), and only for the findings that are printed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from platformctl.documents import key_text
from platformctl.model import Release
from platformctl.policy.findings import Finding
from platformctl.yamlio import located, read_mapping

# The checkov documentation's index of its Kubernetes checks (one page lists every id).
CHECKOV_DOCS = "https://www.checkov.io/5.Policy%20Index/kubernetes.html"

KeyPath = tuple[str, ...]
# check id -> the chart value that decides it, given the finding's message and the merged values
Decider = Callable[[str, Mapping[str, Any]], KeyPath | None]


def _fixed(*key: str) -> Decider:
    return lambda _message, _values: key


def _replicas(message: str, values: Mapping[str, Any]) -> KeyPath | None:
    if "PodDisruptionBudget" in message:
        return ("podDisruptionBudget", "enabled")
    autoscaled = bool((values.get("autoscaling") or {}).get("enabled"))
    return ("autoscaling", "minReplicas") if autoscaled else ("replicaCount",)


_LACKS = re.compile(r"lacks (?P<missing>.+)$")


def _missing_resource(message: str, _values: Mapping[str, Any]) -> KeyPath | None:
    """A request or limit a layer removed (set to null); several missing: no single value."""
    match = _LACKS.search(message)
    missing = match["missing"].split(", ") if match else []
    if len(missing) != 1 or not missing[0].startswith(("requests.", "limits.")):
        return None
    return ("resources", *missing[0].split("."))


DECIDERS: Mapping[str, Decider] = {
    "PLAT001": _fixed("image", "digest"),
    "PLAT002": _fixed("image", "tag"),
    "PLAT003": _replicas,
    "PLAT004": _missing_resource,
    "PLAT005": _fixed("service", "type"),
    "CKV_K8S_10": _fixed("resources", "requests", "cpu"),
    "CKV_K8S_11": _fixed("resources", "limits", "cpu"),
    "CKV_K8S_12": _fixed("resources", "requests", "memory"),
    "CKV_K8S_13": _fixed("resources", "limits", "memory"),
    "CKV_K8S_15": _fixed("image", "pullPolicy"),
    "CKV_K8S_38": _fixed("serviceAccount", "automountToken"),
    "CKV_K8S_40": _fixed("runAsUser"),
    "CKV2_K8S_6": _fixed("networkPolicy", "enabled"),
}


def setting(data: Any, key: Sequence[str]) -> list[str] | None:
    """The part of ``key`` that ``data`` (one layer) sets: all of it, or a prefix set to
    something that is not a mapping (``resources: null`` removes every request); None when
    the layer leaves it to the layers below."""
    for depth, part in enumerate(key):
        if not isinstance(data, Mapping) or part not in data:
            return None
        data = data[part]
        if depth < len(key) - 1 and not isinstance(data, Mapping):
            return list(key[: depth + 1])
    return list(key)


class ValueSources:
    """Finds, for a service's finding, the layer that set its value (the chart's defaults read
    once per run)."""

    def __init__(self, chart: Path, releases: Iterable[Release]) -> None:
        self.releases = {release.key: release for release in releases}
        self.chart_values = chart / "values.yaml"
        self.defaults = read_mapping(self.chart_values) if self.chart_values.is_file() else {}

    def source(self, release: Release, key: Sequence[str]) -> str | None:
        """``file:line: key`` of the layer whose value Helm uses for ``key``, or None."""
        return value_source(release, (self.chart_values, self.defaults), key)

    def pointed(self, finding: Finding) -> Finding:
        """The finding with where to fix it: the values file, line and key in front (a
        service's finding that one value decides), and checkov's documentation after."""
        message, release = finding.message, self.releases.get(finding.target)
        decider = DECIDERS.get(finding.check)
        if release is not None and decider is not None:
            key = decider(message, release.values)
            found = self.source(release, key) if key else None
            if found:
                message = f"{found}: {message}"
        if finding.engine == "checkov":
            message = f"{message} ({finding.check}: {CHECKOV_DOCS})"
        return finding if message == finding.message else replace(finding, message=message)


def value_source(
    release: Release, defaults: tuple[Path, Mapping[str, Any]], key: Sequence[str]
) -> str | None:
    """``file:line: key`` of the highest layer that sets ``key`` (environment file, base
    file, chart defaults), or None when none does."""
    layers = (
        (release.values_file, release.environment_values),
        (release.base_file, release.base_values),
        defaults,
    )
    for path, data in layers:
        found = setting(data, key)
        if found is not None:
            return f"{located(path, found)}: {key_text(found)}"
    return None
