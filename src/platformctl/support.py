"""The support calendar (``environments/support.yaml``): until when AWS sells and supports an
EKS Kubernetes minor, an RDS PostgreSQL version, and until when Argo CD patches a minor.

One loader, typed; read by the stack settings (``pulumi preview/up``) and ``platform verify``.
A version past its end of standard support on the day they run is refused; one within
``WARN_DAYS`` of it is a warning naming the next version.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from platformctl.documents import check_document, packaged_schema, validator_for
from platformctl.yamlio import display_path, read_mapping

SUPPORT_FILE = "support.yaml"
WARN_DAYS = 90
# The Argo CD chart the bootstrap installs, vendored with its lock (its appVersion is the
# Argo CD version the stacks run).
ARGOCD_CHART = Path("charts") / "vendor" / "argo-cd" / "Chart.yaml"


@dataclass(frozen=True)
class Supported:
    """One version and the day its (standard) support ends."""

    product: str
    version: str
    ends: dt.date


@dataclass(frozen=True)
class Verdict:
    """What the calendar says about one pinned version on one day."""

    refused: str | None = None
    warning: str | None = None


@dataclass(frozen=True)
class Calendar:
    source: Path
    kubernetes: Mapping[str, Supported]
    addons: Mapping[str, Mapping[str, tuple[str, ...]]]
    postgres: Mapping[str, Supported]
    postgres_minors_until: Mapping[str, dt.date]
    argocd: Mapping[str, Supported]

    def _judge(
        self, known: Mapping[str, Supported], version: str, today: dt.date, what: str
    ) -> Verdict:
        where = display_path(self.source)
        entry = known.get(version)
        ordered = sorted(known, key=_numeric)
        if entry is None:
            current = [v for v in ordered if today < known[v].ends]
            return Verdict(
                refused=f"{what} {version} is not in {where}: use one of " + ", ".join(current)
            )
        if today >= entry.ends:
            later = [
                v for v in ordered if _numeric(v) > _numeric(version) and today < known[v].ends
            ]
            target = later[0] if later else None
            return Verdict(
                refused=f"{what} {version} left standard support on {entry.ends.isoformat()}: "
                + (f"move to {target}" if target else f"no later version in {where}; add one")
            )
        if (entry.ends - today).days <= WARN_DAYS:
            later = [v for v in ordered if _numeric(v) > _numeric(version)]
            target = later[0] if later else None
            return Verdict(
                warning=f"{what} {version} leaves standard support on {entry.ends.isoformat()} "
                f"({(entry.ends - today).days} days): "
                + (f"plan the move to {target}" if target else f"add the next version to {where}")
            )
        return Verdict()

    def kubernetes_version(self, version: str, today: dt.date) -> Verdict:
        return self._judge(self.kubernetes, version, today, "EKS Kubernetes")

    def argocd_version(self, app_version: str, today: dt.date) -> Verdict:
        """``app_version`` as the chart states it (``v3.4.7``): judged by its minor."""
        minor = ".".join(app_version.removeprefix("v").split(".")[:2])
        return self._judge(self.argocd, minor, today, "Argo CD")

    def postgres_version(self, version: str, today: dt.date) -> Verdict:
        """A major ("17": RDS creates its default minor) or a minor ("17.7")."""
        major = version.split(".", maxsplit=1)[0]
        verdict = self._judge(self.postgres, major, today, "RDS PostgreSQL")
        until = self.postgres_minors_until.get(version)
        if verdict.refused is None and until is not None and today >= until:
            return Verdict(
                refused=f"RDS PostgreSQL {version} cannot be created since {until.isoformat()}: "
                f'pin the major ("{major}") and let RDS pick its default minor'
            )
        return verdict

    def addon_version(self, kubernetes: str, addon: str, version: str) -> str | None:
        """Why an EKS add-on build does not fit the cluster's minor, or None."""
        known = self.addons.get(kubernetes, {}).get(addon)
        if known is None:
            return (
                f"{display_path(self.source)} lists no {addon} build for Kubernetes "
                f"{kubernetes}: add the ones `aws eks describe-addon-versions` names"
            )
        if version not in known:
            return f"{addon} {version} is not a build for Kubernetes {kubernetes}: use " + (
                ", ".join(known)
            )
        return None


def _numeric(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def _iso(value: Any) -> Any:
    """YAML reads ``2027-03-27`` as a date; the schema checks the text."""
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _iso(v) for k, v in value.items()}
    return [_iso(v) for v in value] if isinstance(value, list) else value


def _supported(product: str, versions: Mapping[str, Any], key: str) -> dict[str, Supported]:
    return {
        version: Supported(product, version, dt.date.fromisoformat(entry[key]))
        for version, entry in versions.items()
    }


@cache
def load_calendar(path: Path) -> Calendar:
    """The calendar at ``path``, schema-checked (``file:line`` on an error)."""
    data = _iso(read_mapping(path))
    check_document(data, validator_for(packaged_schema("support")), path)
    kubernetes, postgres, argocd = data["kubernetes"], data["postgres"], data["argocd"]
    return Calendar(
        source=path,
        kubernetes=_supported("kubernetes", kubernetes["versions"], "standardSupportEnds"),
        addons={
            minor: {addon: tuple(builds) for addon, builds in addons.items()}
            for minor, addons in kubernetes["addons"]["versions"].items()
        },
        postgres=_supported("postgres", postgres["versions"], "standardSupportEnds"),
        postgres_minors_until={
            minor: dt.date.fromisoformat(day)
            for minor, day in postgres.get("minorsCreatableUntil", {}).items()
        },
        argocd=_supported("argocd", argocd["versions"], "supportEnds"),
    )


def argocd_app_version(root: Path) -> str | None:
    """The Argo CD version of the vendored chart, or None when the chart is not vendored."""
    chart = root / ARGOCD_CHART
    if not chart.is_file():
        return None
    return str(read_mapping(chart).get("appVersion", "")) or None


def argocd_verdict(calendar: Calendar, root: Path, today: dt.date) -> Verdict:
    version = argocd_app_version(root)
    if version is None:
        return Verdict(
            warning=f"{ARGOCD_CHART} not found: the Argo CD chart is not vendored, so its "
            "version cannot be held to the support calendar"
        )
    return calendar.argocd_version(version, today)
